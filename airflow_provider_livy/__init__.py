"""Apache Airflow provider for Livy, with its own Livy-compatible Spark job server."""

from __future__ import annotations

__version__ = "0.3.0"
