#!/usr/bin/env bash
# Sets up everything the tests need (Java, ZooKeeper, .venv) and runs the whole suite: the main suite,
# then the stress suite (tests/stress: 30 s of load here, crashes, a ZooKeeper outage).
# The main suite runs on two workers, a test module at a time on one of them (pytest-xdist, --dist loadfile).
# Extra arguments go to pytest and run only the main suite, e.g. scripts/test.sh -k recovery
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
echo "[test] ruff"
.venv/bin/ruff check .
echo "[test] pytest: main suite"
.venv/bin/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --durations=25 "$@"
if [[ $# -eq 0 ]]; then
  echo "[test] pytest: stress suite (tests/stress)"
  # 30 s of load instead of the suite's own 60 s: the whole run stays well inside CI's 30 minutes
  STRESS_SECONDS=${STRESS_SECONDS:-30} .venv/bin/python -m pytest -p no:cacheprovider tests/stress -s
fi
