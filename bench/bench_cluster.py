"""Benchmark: the server-side cost of following N running cluster apps (deploy mode cluster).

A server follows N drivers handed to a standalone cluster. They come from a filesystem store of N
records of handed-over running batches (as a restart finds them), and a stand-in for the master's
`/json/` status lists all N as RUNNING (pre-encoded bytes, served from a thread, so the stand-in
costs the server nothing). The server polls it once per interval for all of them.

- RSS per followed app: (RSS with N followed - RSS of the same server following none) / N, the RSS
  being the median of samples taken every 0.25 s over the window (a single sample landed inside a
  poll a third of the time under load, adding that poll's parse: 1.9 or 2.7 KB in two rounds); the
  peak per app (the largest sample, a poll's parse included) is reported next to it.
- CPU per followed app per poll: the server's CPU time (user + system) over a window of polls,
  minus the idle server's CPU over the same wall time, divided by polls and by N.

Side by side: the RSS of one spark-submit JVM waiting for its app
(`spark.standalone.submit.waitAppCompletion=true`), measured on a real standalone cluster from the
pyspark package, which is what following costs when spark-submit waits, per app.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from airflow_provider_livy.server.stores.index import entry_name
from bench.common import Row, livy_server, median, say, spread, wait_until

TARGET_BYTES = 2048
TARGET_CPU_US = 20.0
POLL_INTERVAL = 1.0
WINDOW_POLLS = 15
RSS_SAMPLE_INTERVAL = 0.25


class MasterStandIn:
    """The master's /json/ with N running drivers; counts the polls."""

    def __init__(self, count: int) -> None:
        drivers = [
            {
                "id": f"driver-20260101000000-{i:05d}",
                "starttime": "1767225600000",
                "state": "RUNNING",
                "cores": 1,
                "memory": 512,
                "resources": {},
                "submitdate": "Thu Jan 01 00:00:00 UTC 2026",
                "worker": "worker-20260101000000-127.0.0.1-40000",
                "mainclass": "Sleeper",
            }
            for i in range(count)
        ]
        worker = {"id": "worker-20260101000000-127.0.0.1-40000", "host": "127.0.0.1", "webuiaddress": "http://127.0.0.1:1"}
        body = {"url": "spark://127.0.0.1:7077", "workers": [worker], "aliveworkers": 1, "activeapps": [], "completedapps": []}
        self.body = json.dumps({**body, "activedrivers": drivers, "completeddrivers": []}).encode()
        self.polls = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                stand_in.polls += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(stand_in.body)))
                self.end_headers()
                self.wfile.write(stand_in.body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_store(root: Path, count: int, ui_url: str) -> None:
    """N records of running batches whose drivers were handed to the stand-in's cluster (appId known)."""
    batch_dir, index_dir = root / "v1" / "batch", root / "v1" / "batch-index"
    batch_dir.mkdir(parents=True)
    index_dir.mkdir(parents=True)
    now = time.time()
    for i in range(count):
        record = {
            "id": i,
            "name": None,
            "appId": f"app-20260101000000-{i:05d}",
            "appTag": f"livy-batch-{i}-0a0b0c0d",
            "owner": None,
            "proxyUser": None,
            "version": 1,
            "state": "running",
            "createdAt": now,
            "finishedAt": None,
            "sparkUiUrl": None,
            "pid": None,
            "pidStart": None,
            "request": None,
            "cluster": {"kind": "standalone", "ui": ui_url, "rest": ""},
            "clusterId": f"driver-20260101000000-{i:05d}",
            "driverLogUrl": None,
        }
        (batch_dir / str(i)).write_text(json.dumps(record))
        (index_dir / entry_name(record)).touch()
    (batch_dir / "state").write_text(json.dumps({"nextSessionId": count}))


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def follow(work_dir: Path, count: int) -> tuple[float, float, int, float]:
    """(median RSS in bytes, CPU seconds over the window, polls in the window, peak RSS) of a server following `count`."""
    stand_in = MasterStandIn(count)
    store = work_dir / f"store-{count}"
    write_store(store, count, stand_in.url)
    settings = {
        "livy.server.recovery.mode": "recovery",
        "livy.server.recovery.state-store": "filesystem",
        "livy.server.recovery.state-store.url": str(store),
        "livy.spark.master": "spark://127.0.0.1:7077",
        "livy.spark.deploy-mode": "cluster",
        "livy.server.standalone.master-ui-url": stand_in.url,
        "livy.server.cluster.poll-interval": f"{POLL_INTERVAL:g}s",
        "livy.server.session.max-sessions": str(max(count + 10, 100)),
    }
    try:
        with livy_server(work_dir / f"server-{count}", settings) as server:
            proc = psutil.Process(server.proc.pid)
            if count:
                wait_until(lambda: stand_in.polls >= 3, 120, 0.05)  # warm: every driver followed, statuses known
                states = server.get("/batches", params={"size": 1}).json()["sessions"]
                assert states and states[0]["state"] == "running", states
            else:
                time.sleep(3 * POLL_INTERVAL)
            polls0, cpu0, t0 = stand_in.polls, cpu_seconds(proc), time.monotonic()
            samples = []
            while time.monotonic() - t0 < WINDOW_POLLS * POLL_INTERVAL:
                samples.append(proc.memory_info().rss)
                time.sleep(RSS_SAMPLE_INTERVAL)
            polls, cpu = stand_in.polls - polls0, cpu_seconds(proc) - cpu0
            rss, peak = median(samples), max(samples)
            say(
                f"following {count}: RSS {rss / 2**20:.1f} MB (peak {peak / 2**20:.1f}), "
                f"{cpu:.3f}s CPU over {polls} polls in {time.monotonic() - t0:.1f}s"
            )
            return rss, cpu, polls, peak
    finally:
        stand_in.close()


def waiting_spark_submit_rss(work_dir: Path) -> float | None:
    """RSS of a spark-submit JVM waiting for its driver on a real standalone cluster (bytes)."""
    from tests.spark_cluster import compile_sleeper, start_cluster

    (work_dir / "cluster").mkdir(parents=True, exist_ok=True)
    jar = compile_sleeper(work_dir / "app")
    cluster = start_cluster(work_dir / "cluster")
    release = work_dir / "release"
    proc = None
    try:
        spark_home = resolve_spark_home(ServerConfig())
        args = [str(spark_home / "bin" / "spark-submit"), "--master", cluster.master_url, "--deploy-mode", "cluster"]
        args += ["--class", "Sleeper", "--conf", "spark.standalone.submit.waitAppCompletion=true"]
        args += ["--conf", "spark.driver.memory=512m", "--conf", "spark.executor.memory=8g", str(jar), str(release)]
        env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
        with open(work_dir / "spark-submit.log", "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)

        def running() -> bool:
            return any(d["state"] == "RUNNING" for d in cluster.status()["activedrivers"])

        wait_until(running, 300, 0.5)
        time.sleep(10)  # the driver runs; spark-submit only waits now
        jvm = [p for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)] if "java" in p.name()]
        samples = []
        for _ in range(5):
            samples.append(sum(p.memory_info().rss for p in jvm))
            time.sleep(1)
        return median(samples)
    finally:
        release.touch()
        if proc is not None:
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        cluster.stop()


def run(work_dir: Path, quick: bool) -> list[Row]:
    """Rounds alternate the idle server and each N, so the machine's load falls on all of them alike."""
    work_dir.mkdir(parents=True, exist_ok=True)
    sizes = [1000] if quick else [1000, 10_000]
    rounds = 1 if quick else 3
    per_app: dict[int, list[float]] = {n: [] for n in sizes}
    peak_per_app: dict[int, list[float]] = {n: [] for n in sizes}
    per_poll: dict[int, list[float]] = {n: [] for n in sizes}
    notes: dict[int, str] = {}
    for round_no in range(rounds):
        idle_rss, idle_cpu, _, idle_peak = follow(work_dir / f"round-{round_no}", 0)
        for count in sizes:
            rss, cpu, polls, peak = follow(work_dir / f"round-{round_no}", count)
            per_app[count].append((rss - idle_rss) / count)
            peak_per_app[count].append((peak - idle_peak) / count)
            per_poll[count].append((cpu - idle_cpu) / max(polls, 1) / count * 1e6)
            notes[count] = (
                f"last round: server RSS {rss / 2**20:.1f} MB following {count}, {idle_rss / 2**20:.1f} MB following none"
            )
    for count in sizes:
        notes[count] += f"; peak (a poll's parse included): {spread(peak_per_app[count])} B per app"
    jvm = None if quick else waiting_spark_submit_rss(work_dir / "jvm")
    anchor = f"one waiting spark-submit JVM per app instead: {jvm / 2**20:.0f} MB each" if jvm else ""
    rows = []
    for count in sizes:
        rows.append(
            Row(
                "cluster",
                f"RSS per followed app, N={count} (the batch held, its handle and last status)",
                f"{spread(per_app[count])} B",
                f"<= {TARGET_BYTES} B",
                anchor,
                median(per_app[count]) <= TARGET_BYTES,
                notes[count],
            )
        )
        rows.append(
            Row(
                "cluster",
                f"CPU per followed app per poll, N={count} (one GET of the master's /json/ for all)",
                f"{spread(per_poll[count], '{:.1f}')} µs",
                f"<= {TARGET_CPU_US:g} µs",
                "the idle server's CPU over the same time subtracted",
                median(per_poll[count]) <= TARGET_CPU_US,
            )
        )
    if jvm:
        rows.append(
            Row(
                "cluster",
                "RSS of one spark-submit JVM waiting for its app",
                f"{jvm / 2**20:.0f} MB",
                "",
                "real standalone cluster",
            )
        )
    return rows


def side_by_side(before: Path, rounds: int, count: int = 10_000) -> None:
    """N=count followed by the code in `before` (a checkout of an older revision, put first on the server's
    PYTHONPATH) and by this checkout, alternating, with the same sampling: what a change did, in one run."""
    work_dir = Path(tempfile.mkdtemp(prefix="livy-bench-cluster-"))
    per_app: dict[str, list[float]] = {"before": [], "after": []}
    peaks: dict[str, list[float]] = {"before": [], "after": []}
    cpus: dict[str, list[float]] = {"before": [], "after": []}
    here = str(Path(__file__).resolve().parent.parent)
    for round_no in range(rounds):
        for code, path in (("before", str(before.resolve())), ("after", here)):
            os.environ["PYTHONPATH"] = path
            idle_rss, idle_cpu, _, idle_peak = follow(work_dir / f"{code}-{round_no}", 0)
            rss, cpu, polls, peak = follow(work_dir / f"{code}-{round_no}", count)
            per_app[code].append((rss - idle_rss) / count)
            peaks[code].append((peak - idle_peak) / count)
            cpus[code].append((cpu - idle_cpu) / max(polls, 1) / count * 1e6)
    for code, values in per_app.items():
        say(
            f"{code}: RSS per app {spread(values)} B, peak {spread(peaks[code])} B, "
            f"CPU per app per poll {spread(cpus[code], '{:.1f}')} µs"
        )
    say(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=side_by_side.__doc__)
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the older revision")
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    side_by_side(arguments.before, arguments.rounds)
