#!/usr/bin/env bash
# The README's first command: set up, start the embedded Livy server with local Spark, run the example
# DAG end to end with `airflow dags test`, and show the server holds no batch afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
