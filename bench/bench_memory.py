"""Benchmark 2: memory under the story's load, and memory per held finished batch.

The story: a scheduler submits batch after batch and never deletes one. Clients here do what an
Airflow task does (POST, poll the state until it is terminal, move on) and never send DELETE, so
only the server's collector keeps memory bounded. The fake spark-home's `sleep=0 exit=0` job ends
at once; each batch still costs a supervisor python and the fake spark-submit's shell.

1. Plateau: N batches with a short state-retain, RSS sampled throughout; the peak of the last
   quarter of the run must stay within 10% of the first quarter's peak.
2. Per held batch: a second server with a long state-retain holds every finished batch; RSS(held)
   minus the first server's RSS once it holds none (both after the same kind of run), divided by
   the number held. RSS, not tracemalloc: it is what the operating system charges the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from airflow_provider_livy.protocol import TERMINAL_STATES
from bench.common import LivyServer, Row, livy_server, rss_mb, say, wait_until

CLIENTS = 16
POLL = 0.2
PLATEAU_SLACK = 1.10
TARGET_BYTES_PER_BATCH = 2048


class Load:
    """CLIENTS closed-loop clients sharing a budget of `total` batches; counts and rates for progress."""

    def __init__(self, server: LivyServer, job: str, total: int) -> None:
        self.server, self.job, self.total = server, job, total
        self.left, self.done, self.refused = total, 0, 0
        self.lock = threading.Lock()

    def _take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def _client(self) -> None:
        session = requests.Session()
        session.headers["X-Requested-By"] = "bench"
        url = self.server.url
        while self._take():
            while (
                response := session.post(f"{url}/batches", json={"file": self.job, "args": ["sleep=0", "exit=0"]})
            ).status_code == 503:
                with self.lock:
                    self.refused += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))
            response.raise_for_status()
            batch_id = response.json()["id"]
            while session.get(f"{url}/batches/{batch_id}/state").json()["state"] not in TERMINAL_STATES:
                time.sleep(POLL)
            with self.lock:
                self.done += 1

    def run(self, on_tick: Callable[[], None]) -> float:
        """Run to the end, calling on_tick() every 0.25 s; returns the seconds taken."""
        start = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(self._client) for _ in range(CLIENTS)]
            while not all(f.done() for f in futures):
                on_tick()
                time.sleep(0.25)
            for future in futures:
                future.result()
        return time.monotonic() - start


def plateau(work_dir: Path, job: str, total: int, retain: int) -> tuple[list[Row], float]:
    """Returns the rows and the server's RSS (MB) once it holds nothing again."""
    settings = {"livy.file.local-dir-whitelist": str(work_dir), "livy.server.session.state-retain.sec": f"{retain}s"}
    with livy_server(work_dir / "plateau", settings) as server:
        proc = psutil.Process(server.proc.pid)
        samples: list[tuple[float, float, int]] = []  # (t, rss MB, held)
        load = Load(server, job, total)
        last_say = [time.monotonic()]
        start = time.monotonic()

        def tick() -> None:
            held = server.get("/batches", params={"size": 0}).json()["total"]
            samples.append((time.monotonic() - start, proc.memory_info().rss / 2**20, held))
            if time.monotonic() - last_say[0] > 15:
                last_say[0] = time.monotonic()
                say(f"memory: {load.done}/{total} batches done, {held} held, RSS {samples[-1][1]:.1f} MB")

        say(f"memory: {total} batches through the API, {CLIENTS} clients, never deleted, state-retain {retain}s")
        seconds = load.run(tick)
        cpu = proc.cpu_times()
        say(f"memory: {total} batches in {seconds:.0f}s ({total / seconds:.1f}/s); waiting for the collector to empty the server")
        wait_until(lambda: server.get("/batches", params={"size": 0}).json()["total"] == 0, retain + 30, 0.2)
        empty_rss = rss_mb(server.proc.pid)
    quarter = len(samples) // 4
    first, last = max(s[1] for s in samples[:quarter]), max(s[1] for s in samples[-quarter:])
    bench = "2. memory"
    server_ms = (cpu.user + cpu.system) / total * 1000
    drivers_ms = (cpu.children_user + cpu.children_system) / total * 1000
    rows = [
        Row(
            bench,
            f"{total:,} batches never deleted: RSS peak, last quarter vs first",
            f"{last:.1f} MB vs {first:.1f} MB = {last / first:.3f}",
            target=f"<= {PLATEAU_SLACK:.2f}",
            anchor=f"first quarter of the same run; state-retain {retain}s, at most {max(s[2] for s in samples)} held",
            met=last <= first * PLATEAU_SLACK,
        ),
        Row(
            bench,
            "submission rate (what limits it)",
            f"{total / seconds:.1f} batches/s; CPU per batch: server {server_ms:.1f} ms, "
            f"supervisor + fake spark-submit {drivers_ms:.1f} ms",
            anchor=f"{CLIENTS} clients polling every {POLL}s; 2 cores shared with the clients",
        ),
    ]
    return rows, empty_rss


def held(work_dir: Path, job: str, count: int, empty_rss: float) -> list[Row]:
    settings = {
        "livy.file.local-dir-whitelist": str(work_dir),
        "livy.server.session.state-retain.sec": "1h",
        "livy.server.session.max-sessions": str(count + 100),
    }
    with livy_server(work_dir / "held", settings) as server:
        load = Load(server, job, count)
        last_say = [time.monotonic()]

        def tick() -> None:
            if time.monotonic() - last_say[0] > 15:
                last_say[0] = time.monotonic()
                say(f"memory: {load.done}/{count} finished batches held, RSS {rss_mb(server.proc.pid):.1f} MB")

        say(f"memory: {count} finished batches held (state-retain 1h), compared with the emptied server")
        load.run(tick)
        total = server.get("/batches", params={"size": 0}).json()["total"]
        if total != count:
            raise RuntimeError(f"expected {count} held, the server holds {total}")
        held_rss = rss_mb(server.proc.pid)
    per_batch = (held_rss - empty_rss) * 2**20 / count
    return [
        Row(
            "2. memory",
            f"memory per held finished batch at {count:,} held",
            f"{per_batch:,.0f} bytes (RSS {held_rss:.1f} MB held vs {empty_rss:.1f} MB empty)",
            target=f"<= {TARGET_BYTES_PER_BATCH:,} bytes",
            anchor="RSS of a server holding them vs one that ran the same load and holds none",
            met=per_batch <= TARGET_BYTES_PER_BATCH,
        )
    ]


def run(work_dir: Path, quick: bool) -> list[Row]:
    total, count, retain = (600, 400, 3) if quick else (20_000, 10_000, 10)
    work_dir.mkdir(parents=True, exist_ok=True)
    job = work_dir / "job.py"
    job.write_text("print('fake job')\n")
    rows, empty_rss = plateau(work_dir, str(job), total, retain)
    return rows + held(work_dir, str(job), count, empty_rss)
