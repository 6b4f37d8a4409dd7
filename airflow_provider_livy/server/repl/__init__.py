"""The REPL of interactive sessions: driver.py runs inside the Spark driver (spark-submit's main file).

The server imports only `locate_sparkr` from it, to check R and SparkR on its host before a sparkr
session starts; everything else runs in the driver's process.
"""

from pathlib import Path

DRIVER_PY = Path(__file__).parent / "driver.py"
