"""Code that runs inside the Spark driver of an interactive session (launched by spark-submit, not imported by the server)."""

from pathlib import Path

DRIVER_PY = Path(__file__).parent / "driver.py"
