"""Benchmark 7: a statement's round trip through the REPL driver alone (server/repl/livy_repl, as its zip).

`1 + 1` is POSTed to the driver's own API, then long-polled (`GET /statements/{id}?wait=10`) until
`available`, one statement at a time on one keep-alive connection, after a warm-up. Two drivers,
measured in the same run: a real Spark driver (`spark-submit --master local[1]`, every statement in
its own Spark job group: one Py4J call) and the same file without Spark (LIVY_REPL_NO_SPARK=1: HTTP
and bookkeeping only). Figures: the client's round trip (median, p99) and the driver's own
execution time (`completed - started` of the statement view: epoch ms, so 1 ms resolution).

This is the anchor for the server's target (the server adds <= 10 ms to a statement's round trip
through /sessions/{id}/statements): `statement_round_trips` measures either path.

Run alone: .venv/bin/python -m bench.bench_repl [--quick]
Side by side with an older checkout (alternating, in one run; also the driver's start without Spark,
from its spawn to `listening`): .venv/bin/python -m bench.bench_repl --before DIR [--quick]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from airflow_provider_livy.server.repl import driver_file
from bench.common import Row, run_alone, say, spread
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
_modules = [sys.modules[name] for name in ("livy_repl.repl", "livy_repl.statement", "__main__") if name in sys.modules]
_Repl, _Statement = (next(getattr(m, name) for m in _modules if hasattr(m, name)) for name in ("Repl", "Statement"))
_repl = next(o for o in gc.get_objects() if isinstance(o, _Repl))
_times = []
for _i in range(200):
    _statement = _Statement(10**9 + _i, "1 + 1", "pyspark")
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


def start_to_listening(main_file: Path, work_dir: Path) -> tuple[float, float]:
    """Seconds from spawning the driver without Spark to its `listening on` line (Python, imports, HTTP socket),
    and the CPU seconds it used by then (less moved by a busy machine than the wall clock)."""
    env = {**os.environ, "LIVY_REPL_SECRET": "bench", "LIVY_REPL_NO_SPARK": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("LIVY_REPL_CALLBACK", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(main_file)], env=env, cwd=work_dir, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    elapsed = next((time.perf_counter() - start for line in proc.stdout if "listening on" in line), None)
    proc.kill()
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = -9
    if elapsed is None:
        raise RuntimeError(f"{main_file} exited before listening")
    return elapsed, usage.ru_utime + usage.ru_stime


def side_by_side(before: Path, work_dir: Path, quick: bool) -> None:
    """The older checkout's driver and this one's, alternating: start without Spark, then the round trips."""
    work_dir.mkdir(parents=True, exist_ok=True)
    files = {"before": before.resolve() / "airflow_provider_livy" / "server" / "repl" / "driver.py", "after": driver_file()}
    starts: dict[str, list[tuple[float, float]]] = {code: [] for code in files}
    for _ in range(10 if quick else 30):
        for code, main_file in files.items():
            starts[code].append(start_to_listening(main_file, work_dir))
    for code, values in starts.items():
        walls, cpus = [wall * 1000 for wall, _ in values], [cpu * 1000 for _, cpu in values]
        say(f"{code}: start without Spark to listening {spread(walls, '{:.1f}')} ms, CPU {spread(cpus, '{:.1f}')} ms")
    spark_starts: dict[str, list[float]] = {code: [] for code in files}
    for round_no in range(3 if quick else 8):  # spark-submit local[1] to the driver's callback, order swapped each round
        for code, main_file in sorted(files.items(), reverse=bool(round_no % 2)):
            start = time.perf_counter()
            start_driver(work_dir, spark=True, main_file=main_file).stop()
            spark_starts[code].append(time.perf_counter() - start)
    for code, values in spark_starts.items():
        say(f"{code}: start on Spark local[1] to the callback {spread(values, '{:.2f}')} s")
    ratios = [after / before for before, after in zip(spark_starts["before"], spark_starts["after"], strict=True)]
    spread_text = spread(ratios, "{:.2f}")
    say(f"after / before, start on Spark: median of the rounds' ratios {statistics.median(ratios):.3f} ({spread_text})")
    count, blocks = (40, 4) if quick else (200, 10)
    for spark, label in ((True, "Spark driver local[1]"), (False, "driver without Spark")):
        drivers = {code: start_driver(work_dir, spark=spark, main_file=main_file) for code, main_file in files.items()}
        trips: dict[str, list[float]] = {code: [] for code in files}
        try:
            for _ in range(blocks):  # both drivers up, alternated in blocks: drift on a shared machine hits both alike
                for code, driver in drivers.items():
                    trips[code] += statement_round_trips(driver.http, driver.address + "/statements", count // blocks)[0]
            executes = {code: in_driver_execution(d.http, d.address + "/statements") for code, d in drivers.items()}
        finally:
            for driver in drivers.values():
                driver.stop()
        for code, values in trips.items():
            say(
                f"{code}: {label}: round trip median {statistics.median(values):.2f} ms, p99 {percentile(values, 0.99):.2f} ms "
                f"(n={len(values)}), execute median {executes[code][0]:.0f} us"
            )
    say(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_alone(__doc__, "bench-repl-", run, side_by_side, lambda row: f"{row.figure}: {row.value} {row.note}")
