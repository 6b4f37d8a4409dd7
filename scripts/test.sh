#!/usr/bin/env bash
# Sets up everything the tests need (Java, ZooKeeper, .venv) and runs the whole suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k recovery
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest"
exec .venv/bin/python -m pytest "$@"
