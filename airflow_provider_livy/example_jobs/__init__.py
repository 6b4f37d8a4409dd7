"""PySpark jobs that ship with the package, for the README's demo and the tests."""

from pathlib import Path

EXAMPLE_JOBS_DIR = Path(__file__).parent
PI_JOB = EXAMPLE_JOBS_DIR / "pi.py"
