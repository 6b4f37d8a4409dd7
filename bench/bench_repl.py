"""Benchmark 7: a statement's round trip through the REPL driver alone (server/repl/driver.py).

`1 + 1` is POSTed to the driver's own API, then long-polled (`GET /statements/{id}?wait=10`) until
`available`, one statement at a time on one keep-alive connection, after a warm-up. Two drivers,
measured in the same run: a real Spark driver (`spark-submit --master local[1]`, every statement in
its own Spark job group: one Py4J call) and the same file without Spark (LIVY_REPL_NO_SPARK=1: HTTP
and bookkeeping only). Figures: the client's round trip (median, p99) and the driver's own
execution time (`completed - started` of the statement view: epoch ms, so 1 ms resolution).

This is the anchor for the server's target (the server adds <= 10 ms to a statement's round trip
through /sessions/{id}/statements): `statement_round_trips` measures either path.

Run alone: .venv/bin/python -m bench.bench_repl [--quick]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.common import Row, say
from tests.test_repl import start_driver

WARM_UP = 10


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def statement_round_trips(http: requests.Session, statements_url: str, count: int) -> tuple[list[float], list[float]]:
    """Round trips (ms) of `1 + 1` POSTed to statements_url and long-polled until available, and the
    execution times (ms) the statement views report."""
    trips, executions = [], []
    for index in range(WARM_UP + count):
        start = time.perf_counter()
        response = http.post(statements_url, json={"code": "1 + 1"}, timeout=30)
        response.raise_for_status()
        statement = response.json()
        while statement["state"] not in ("available", "cancelled"):
            statement = http.get(f"{statements_url}/{statement['id']}", params={"wait": 10}, timeout=30).json()
        elapsed = (time.perf_counter() - start) * 1000
        assert statement["output"]["data"]["text/plain"] == "2", statement
        if index >= WARM_UP:
            trips.append(elapsed)
            executions.append(statement["completed"] - statement["started"])
    return trips, executions


# Run inside the driver: time its own `execute` of `1 + 1` (Py4J job group call included) with a
# clock finer than the statement view's epoch ms. The REPL object is found through the garbage
# collector: this is the bench looking inside, not an API.
IN_DRIVER_TIMING = """
import gc, sys, time
_driver = sys.modules["__main__"]
_repl = next(o for o in gc.get_objects() if isinstance(o, _driver.Repl))
_times = []
for _i in range(200):
    _statement = _driver.Statement(10**9 + _i, "1 + 1", "pyspark")
    _start = time.perf_counter()
    _output = _repl.execute(_statement)
    _times.append((time.perf_counter() - _start) * 1e6)
    assert _output["data"]["text/plain"] == "2", _output
_times.sort()
execute_us = [_times[len(_times) // 2], _times[int(len(_times) * 0.99)]]
%json execute_us
"""


def in_driver_execution(http: requests.Session, statements_url: str) -> list[float]:
    """Median and p99 (microseconds) of the driver's own execution of `1 + 1`."""
    statement = http.post(statements_url, json={"code": IN_DRIVER_TIMING}, timeout=30).json()
    while statement["state"] not in ("available", "cancelled"):
        statement = http.get(f"{statements_url}/{statement['id']}", params={"wait": 10}, timeout=30).json()
    assert statement["output"]["status"] == "ok", statement["output"]
    return statement["output"]["data"]["application/json"]


def _rows(label: str, trips: list[float], executions: list[float], execute_us: list[float]) -> list[Row]:
    n = len(trips)
    return [
        Row(
            "repl",
            f"`1 + 1` round trip, {label} (median / p99, n={n})",
            f"{statistics.median(trips):.1f} / {percentile(trips, 0.99):.1f} ms",
        ),
        Row(
            "repl",
            f"driver execution, {label} (completed - started, median / p99)",
            f"{statistics.median(executions):.0f} / {percentile(executions, 0.99):.0f} ms",
            note="epoch ms: 1 ms resolution",
        ),
        Row(
            "repl",
            f"driver's own `execute` of `1 + 1`, {label} (perf_counter inside the driver, median / p99, n=200)",
            f"{execute_us[0]:.0f} / {execute_us[1]:.0f} us",
        ),
    ]


def run(work_dir: Path, quick: bool) -> list[Row]:
    work_dir.mkdir(parents=True, exist_ok=True)
    count = 30 if quick else 100
    rows: list[Row] = []
    for spark, label in ((True, "Spark driver local[1]"), (False, "driver without Spark")):
        say(f"repl: starting the {label}")
        driver = start_driver(work_dir, spark=spark)
        try:
            trips, executions = statement_round_trips(driver.http, driver.address + "/statements", count)
            execute_us = in_driver_execution(driver.http, driver.address + "/statements")
        finally:
            driver.stop()
        say(f"repl: {label}: median {statistics.median(trips):.1f} ms, p99 {percentile(trips, 0.99):.1f} ms")
        rows += _rows(label, trips, executions, execute_us)
    return rows


if __name__ == "__main__":
    quick_count = sys.argv[1:] == ["--quick"]
    for row in run(Path(tempfile.mkdtemp(prefix="bench-repl-")), quick_count):
        print(f"{row.figure}: {row.value} {row.note}")
