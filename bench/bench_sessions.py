"""Benchmark 9: interactive sessions, what the server adds to a session's start and to a statement.

1. Session start on real local Spark: POST /sessions until `idle` (polled every 50 ms), against a
   plain PySpark script that builds a SparkSession, run through the same spark-submit, until it
   prints that it is ready. Alternated round by round, same master (local[1]). Target: the server
   adds <= 1 s (median against median).
2. Statement round trip for `1 + 1`, one at a time after a warm-up: POST, then long polls of
   GET .../statements/{id}?wait=10 until available, through the server, alternated in blocks with
   the same requests sent straight to the session's driver (its address and secret read from the
   filesystem state store, as a restarted server reads them). The driver is the real REPL without
   Spark (LIVY_REPL_NO_SPARK: the statement costs the same Python either way; the Spark case of the
   driver alone is bench_repl's row). Target: the server adds <= 10 ms (median, and p99 reported).
3. Server memory per idle session: RSS sampled as idle sessions are added in 5 steps up to 1,000 (full
   run); the figure is the least-squares slope of RSS over the count (the first step also pays one-off
   growth and is shown apart). Each
   session is a real watched driver process that calls back with the address of one stand-in REPL
   the benchmark serves (tests/stand_in_spark_home), so a thousand fit on the machine. Then 20 real
   REPLs (no Spark) run 100 statements each, to show the server keeps none of them.
   Target: <= 4 KB per idle session.

Run alone: .venv/bin/python -m bench.bench_sessions [--quick]
Side by side with an older checkout (session start and round trip through each server, alternating, in
one run): .venv/bin/python -m bench.bench_sessions --before DIR [--quick]
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from bench.bench_repl import percentile, statement_round_trips
from bench.common import Row, livy_server, median, rss_mb, run_alone, say, spread
from tests.stand_in_repl import STAND_IN_SPARK_HOME, stand_in_repl
from tests.state_store import FileStoreView

TARGET_START_S = 1.0
TARGET_TRIP_MS = 10.0
TARGET_BYTES = 4096
PLAIN_SCRIPT = """
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
print("plain-pyspark: ready", flush=True)
spark.stop()
"""


def session_start(server_url: str, http: requests.Session) -> float:
    """Seconds from POST /sessions to idle; the session is deleted after."""
    start = time.perf_counter()
    session_id = http.post(f"{server_url}/sessions", json={"kind": "pyspark"}, timeout=30).json()["id"]
    while (state := http.get(f"{server_url}/sessions/{session_id}/state", timeout=30).json()["state"]) != "idle":
        if state in ("dead", "killed", "error"):
            raise RuntimeError(f"session {session_id} ended {state}")
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    http.delete(f"{server_url}/sessions/{session_id}", timeout=60)
    return elapsed


def plain_start(spark_submit: Path, script: Path) -> float:
    """Seconds from spark-submit to the script's SparkSession being built."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(spark_submit), "--master", "local[1]", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "plain-pyspark: ready" in line:
            elapsed = time.perf_counter() - start
            break
    else:
        raise RuntimeError("the plain PySpark script never got its SparkSession")
    proc.wait(120)
    return elapsed


def bench_start(work_dir: Path, rounds: int) -> list[Row]:
    script = work_dir / "plain_pyspark.py"
    script.write_text(PLAIN_SCRIPT)
    spark_submit = resolve_spark_home(ServerConfig()) / "bin" / "spark-submit"
    ours, plain = [], []
    with livy_server(work_dir / "start", {"livy.spark.master": "local[1]"}, fake_spark=False) as server:
        http = requests.Session()
        http.headers["X-Requested-By"] = "bench"
        for index in range(rounds):
            plain.append(plain_start(spark_submit, script))
            ours.append(session_start(server.url, http))
            say(f"sessions: start round {index + 1}: server {ours[-1]:.2f} s, plain script {plain[-1]:.2f} s")
    added = median(ours) - median(plain)
    return [
        Row(
            "sessions",
            "session start, POST /sessions to idle (local[1])",
            f"{spread(ours, '{:.2f}')} s",
            anchor=f"plain PySpark script building a SparkSession: {spread(plain, '{:.2f}')} s",
        ),
        Row(
            "sessions",
            "added by the server to a session's start (median - median)",
            f"{added:.2f} s",
            target=f"<= {TARGET_START_S:g} s",
            met=added <= TARGET_START_S,
        ),
    ]


def bench_round_trip(work_dir: Path, count: int) -> list[Row]:
    store = FileStoreView(work_dir / "store")
    with livy_server(work_dir / "trip", store.settings) as server:
        http = requests.Session()
        http.headers["X-Requested-By"] = "bench"
        session_id = http.post(f"{server.url}/sessions", json={"kind": "pyspark"}, timeout=30).json()["id"]
        while http.get(f"{server.url}/sessions/{session_id}/state", timeout=30).json()["state"] != "idle":
            time.sleep(0.05)
        record = store.records("interactive")[session_id]
        direct = requests.Session()
        direct.headers["Authorization"] = f"Bearer {record['replSecret']}"
        via_server, straight, executions = [], [], []
        blocks = 5
        for _ in range(blocks):  # alternated in blocks, so drift on a shared machine hits both alike
            trips, runs = statement_round_trips(http, f"{server.url}/sessions/{session_id}/statements", count // blocks)
            via_server += trips
            executions += runs
            straight += statement_round_trips(direct, f"{record['replAddress']}/statements", count // blocks)[0]
        floor = []
        for _ in range(50):  # the HTTP floor at this moment: a route that does nothing
            start = time.perf_counter()
            http.get(f"{server.url}/version", timeout=30)
            floor.append((time.perf_counter() - start) * 1000)
    added = median(via_server) - median(straight)
    say(f"sessions: round trip via server {median(via_server):.1f} ms, straight to the driver {median(straight):.1f} ms")
    return [
        Row(
            "sessions",
            f"`1 + 1` round trip through the server, long polls (median / p99, n={len(via_server)})",
            f"{median(via_server):.1f} / {percentile(via_server, 0.99):.1f} ms",
            anchor=f"straight to the driver: {median(straight):.1f} / {percentile(straight, 0.99):.1f} ms; "
            f"driver execution {statistics.median(executions):.0f} ms",
        ),
        Row(
            "sessions",
            "added by the server to a statement's round trip (median - median)",
            f"{added:.1f} ms",
            target=f"<= {TARGET_TRIP_MS:g} ms",
            met=added <= TARGET_TRIP_MS,
            note=f"p99 added {percentile(via_server, 0.99) - percentile(straight, 0.99):.1f} ms; "
            f"the HTTP floor (GET /version) meanwhile {median(floor):.1f} ms; load average {os.getloadavg()[0]:.1f}",
        ),
    ]


def open_idle_sessions(http: requests.Session, url: str, count: int) -> list[int]:
    """POST `count` sessions and wait until all are idle, then let the followers rest and the channel's
    pooled connections expire."""
    ids = [http.post(f"{url}/sessions", json={}, timeout=60).json()["id"] for _ in range(count)]
    for session_id in ids:
        while http.get(f"{url}/sessions/{session_id}/state", timeout=60).json()["state"] != "idle":
            time.sleep(0.1)
    time.sleep(8)
    return ids


def bench_idle_memory(work_dir: Path, sessions: int, steps: int = 5) -> list[Row]:
    """Server RSS as idle sessions are added in `steps` equal steps; the figure is the slope of RSS over the
    session count (least squares), which the allocator's step-wise growth cannot fake in either direction.
    The first step is shown apart: it also pays one-off growth (the channel's pool, Python's URL cache)."""
    settings = {"livy.server.session.max-creation": "32", "livy.server.session.max-sessions": str(sessions + 10)}
    counts, sizes = [], []
    with stand_in_repl(), livy_server(work_dir / "idle", settings, spark_home=STAND_IN_SPARK_HOME) as server:
        http = requests.Session()
        http.headers["X-Requested-By"] = "bench"
        open_idle_sessions(http, server.url, 10)  # first-session imports and pools
        before = rss_mb(server.proc.pid)
        for step in range(steps):
            open_idle_sessions(http, server.url, sessions // steps)
            counts.append((step + 1) * (sessions // steps))
            sizes.append(rss_mb(server.proc.pid) * 2**20)
            say(f"sessions: {counts[-1]} idle sessions: RSS {sizes[-1] / 2**20:.2f} MB")
    per_session = statistics.linear_regression(counts, sizes).slope
    first = (sizes[0] / 2**20 - before) * 2**20 / counts[0]
    trace = " -> ".join(f"{size / 2**20:.1f}" for size in sizes)
    return [
        Row(
            "sessions",
            f"server memory per idle session (slope of RSS over {counts[0]}..{counts[-1]} idle sessions)",
            f"{per_session:.0f} B",
            target=f"<= {TARGET_BYTES} B",
            met=per_session <= TARGET_BYTES,
            anchor=f"RSS {before:.1f} MB with 10, then {trace} MB; the first {counts[0]}: {first:.0f} B each",
            note="each session a watched driver process calling back to one stand-in REPL (tests/stand_in_spark_home)",
        ),
    ]


def bench_retained_statements(work_dir: Path, sessions: int, statements: int) -> list[Row]:
    """Real REPL drivers (no Spark) running `statements` statements each: they keep them, the server does not."""
    settings = {"livy.server.session.max-creation": "8", "livy.rsc.retained-statements": str(statements)}
    with livy_server(work_dir / "memory", settings) as server:
        http = requests.Session()
        http.headers["X-Requested-By"] = "bench"
        ids = open_idle_sessions(http, server.url, sessions)
        idle = rss_mb(server.proc.pid)
        for session_id in ids:
            for _ in range(statements):
                http.post(f"{server.url}/sessions/{session_id}/statements", json={"code": "1 + 1"}, timeout=30)
        for session_id in ids:
            while http.get(f"{server.url}/sessions/{session_id}/state", timeout=30).json()["state"] != "idle":
                time.sleep(0.1)
        time.sleep(3)
        retained = rss_mb(server.proc.pid)
    say(f"sessions: RSS {idle:.1f} MB with {sessions} idle sessions, {retained:.1f} MB after {statements} statements in each")
    return [
        Row(
            "sessions",
            f"server RSS after {statements} retained statements in each of {sessions} sessions",
            f"{retained:.1f} MB",
            anchor=f"{idle:.1f} MB before them",
            note="statements live in the drivers",
        ),
    ]


def run(work_dir: Path, quick: bool) -> list[Row]:
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = bench_round_trip(work_dir, 50 if quick else 300)
    rows += bench_idle_memory(work_dir, 200 if quick else 1000)
    rows += bench_retained_statements(work_dir, 20, 100)
    rows += bench_start(work_dir, 2 if quick else 3)
    return rows


def open_session(http: requests.Session, server_url: str) -> int:
    session_id = http.post(f"{server_url}/sessions", json={"kind": "pyspark"}, timeout=30).json()["id"]
    while http.get(f"{server_url}/sessions/{session_id}/state", timeout=30).json()["state"] != "idle":
        time.sleep(0.05)
    return session_id


def side_by_side(before: Path, work_dir: Path, quick: bool) -> None:
    """A server running the older checkout in `before` (first on its PYTHONPATH) and one running this one,
    alternating: session starts on real local Spark, then `1 + 1` round trips through each server to a
    REPL without Spark (fake spark-home), in blocks."""
    here = str(Path(__file__).resolve().parent.parent)
    paths = {"before": str(before.resolve()), "after": here}
    http = requests.Session()
    http.headers["X-Requested-By"] = "bench"
    for spark, rounds in ((True, 4 if quick else 8), (False, 6 if quick else 12)):
        results: dict[str, list[float]] = {code: [] for code in paths}
        per_round: dict[str, list[float]] = {code: [] for code in paths}  # one figure a round: a start, a block's median
        with contextlib.ExitStack() as stack:
            servers = {}
            for code, path in paths.items():
                os.environ["PYTHONPATH"] = path
                settings = {"livy.spark.master": "local[1]"} if spark else {}
                servers[code] = stack.enter_context(livy_server(work_dir / f"{code}-{spark}", settings, fake_spark=not spark))
            sessions = {} if spark else {code: open_session(http, server.url) for code, server in servers.items()}
            for round_no in range(rounds):  # the order swaps each round: the first may leave a JVM stopping
                for code, server in sorted(servers.items(), reverse=bool(round_no % 2)):
                    if spark:
                        values = [session_start(server.url, http)]
                    else:
                        url = f"{server.url}/sessions/{sessions[code]}/statements"
                        values = statement_round_trips(http, url, 20 if quick else 40)[0]
                    results[code] += values
                    per_round[code].append(median(values))
        what = "session start on local[1], s" if spark else "`1 + 1` round trip through the server, ms"
        for code, values in results.items():
            say(f"{code}: {what}: median {median(values):.3f} ({min(values):.3f}-{max(values):.3f}, n={len(values)})")
        ratios = [after / before for before, after in zip(per_round["before"], per_round["after"], strict=True)]
        name = what.split(",", maxsplit=1)[0]
        say(f"after / before, {name}: median of the rounds' ratios {median(ratios):.3f} ({spread(ratios, '{:.2f}')})")
    say(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_alone(
        __doc__,
        "bench-sessions-",
        run,
        side_by_side,
        lambda row: f"{row.figure}: {row.value} | target {row.target} | {row.anchor} {row.note}",
    )
