"""The driver log: lines on the real stdout, which spark-submit's log file (and the server) receives."""

from __future__ import annotations

import sys

LOG_STREAM = sys.stdout  # the real one, whatever statements do to sys.stdout


def log(message: str) -> None:
    """A line in the driver log (the real stdout, which spark-submit's log file receives)."""
    LOG_STREAM.write(f"livy-repl: {message}\n")  # one write: lines from several threads stay whole
    LOG_STREAM.flush()
