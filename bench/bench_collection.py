"""Benchmark 3: 40,000 finished sessions expiring at one moment, for each state store.

The server gets them the way a long-running server would hold them: a store filled with 40,000
finished records (all finished at the same instant F), recovered at start-up into memory. The
moment they expire is set by state-retain: a first start measures how long recovery takes on
the host right now, then the server starts again with state-retain chosen so that F + retain falls
a few seconds after it is serving. Timed: from that instant until GET /batches counts none and
the store holds neither records nor index entries.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException

from bench.bench_recovery import fill_filesystem, fill_zookeeper, record
from bench.common import LivyServer, Row, livy_server, median, say, spread, wait_until
from tests.zookeeper import ZooKeeperServer

TARGET_ZOOKEEPER = 2.0
SLACK = 3.0  # seconds between serving and the common expiry


def records(count: int, finished: float) -> list[dict]:
    return [record(batch_id, "success", finished - 5, finished) for batch_id in range(count)]


def held(server: LivyServer) -> int:
    return server.get("/batches", params={"size": 0}).json()["total"]


class Prober:
    """Asks the server for /version every 20 ms and keeps the slowest answer: a stalled event loop shows here."""

    def __init__(self, url: str) -> None:
        self.url, self.slowest = url, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            start = time.monotonic()
            session.get(f"{self.url}/version", timeout=120)
            self.slowest = max(self.slowest, time.monotonic() - start)
            time.sleep(0.02)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(130)


def write_driver_logs(log_dir: Path, count: int) -> None:
    """What 40,000 finished batches leave on disk: a log and an exit file each."""
    log_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(f"INFO driver line {i}\n" for i in range(20)).encode()
    for batch_id in range(count):
        (log_dir / f"{batch_id}.log").write_bytes(text)
        (log_dir / f"{batch_id}.exit").write_bytes(b"0\n")


def driver_files(log_dir: Path) -> list[str]:
    """The batches' logs and exit files left (the log dir also holds the sessions' `interactive/` folder)."""
    return [entry.name for entry in os.scandir(log_dir) if entry.is_file()]


def collect_once(
    work: Path, settings: dict[str, str], count: int, finished: float, in_store: Callable[[], int]
) -> dict[str, float]:
    """Two starts on the same store: one to time recovery, one whose retention ends just after serving.

    The driver logs live on tmpfs so that writing 80,000 files beforehand does not take minutes
    on a slow disk; removing them still costs 80,000 unlink calls.
    """
    log_dir = Path(tempfile.mkdtemp(prefix="livy-bench-logs-", dir="/dev/shm"))
    try:
        write_driver_logs(log_dir, count)
        base = {
            **settings,
            "livy.server.recovery.mode": "recovery",
            "livy.server.session.max-sessions": str(count + 1000),
            "livy.server.log-dir": str(log_dir),
        }
        started = time.time()
        with livy_server(work / "probe", {**base, "livy.server.session.state-retain.sec": "1h"}) as server:
            wait_until(lambda: held(server) == count, 120, 0.05)
        ready = time.time() - started
        expiry = time.time() + 2 * ready + SLACK
        retain = expiry - finished
        with livy_server(work / "timed", {**base, "livy.server.session.state-retain.sec": f"{retain:.3f}s"}) as server:
            if held(server) != count:
                wait_until(lambda: held(server) == count, max(1.0, expiry - time.time()), 0.05)
            if time.time() >= expiry:
                raise RuntimeError(f"recovery took longer than {2 * ready + SLACK:.1f}s: the sessions expired before it ended")
            time.sleep(max(0.0, expiry - time.time() - 0.5))
            with Prober(server.url) as prober:
                wait_until(lambda: held(server) == 0, 60, 0.005)
                memory = time.time() - expiry
                wait_until(lambda: in_store() == 0, 300, 0.005)
                store = time.time() - expiry
                wait_until(lambda: not driver_files(log_dir), 300, 0.05)
                logs = time.time() - expiry
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    say(
        f"collection: {count:,} expired together: gone from memory after {memory:.2f}s, from the store after {store:.2f}s, "
        f"logs removed after {logs:.2f}s; slowest /version meanwhile {prober.slowest:.2f}s"
    )
    return {"memory": memory, "store": store, "logs": logs, "stall": prober.slowest, "both": max(memory, store)}


@contextmanager
def zookeeper_client(work: Path) -> Iterator[tuple[ZooKeeperServer, KazooClient]]:
    zookeeper = ZooKeeperServer(work / "zookeeper").start()
    client = KazooClient(hosts=zookeeper.hosts)
    client.start()
    try:
        yield zookeeper, client
    finally:
        client.stop()
        zookeeper.stop()


def filesystem_rounds(work_dir: Path, root_dir: Path, count: int, rounds: int) -> list[dict[str, float]]:
    found = []
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp(prefix="livy-bench-store-", dir=root_dir))
        try:
            finished = time.time()
            fill_filesystem(root, records(count, finished))
            os.sync()  # as after a long run: the records are on disk, not only in the page cache

            def fs_count(root: Path = root) -> int:
                return len(os.listdir(root / "v1/batch-index")) + sum(n.isdigit() for n in os.listdir(root / "v1/batch"))

            settings = {"livy.server.recovery.state-store.url": str(root)}
            found.append(collect_once(work_dir / f"fs-{root.name}", settings, count, finished, fs_count))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return found


def zookeeper_rounds(work_dir: Path, count: int, rounds: int) -> list[dict[str, float]]:
    """A fresh ZooKeeper each round: the test fixture's 256 MB heap does not outlive several rounds of 80,000 znodes."""
    found = []
    for number in range(rounds):
        with zookeeper_client(work_dir / f"zk-{number}") as (zookeeper, client):
            prefix = f"collect{number}"
            finished = time.time()
            fill_zookeeper(client, prefix, records(count, finished))

            def zk_count(prefix: str = prefix, client: KazooClient = client) -> int:
                batch = client.get_children(f"/{prefix}/v1/batch")
                return len(client.get_children(f"/{prefix}/v1/batch-index")) + sum(n.isdigit() for n in batch)

            settings = {
                "livy.server.recovery.state-store": "zookeeper",
                "livy.server.recovery.state-store.url": zookeeper.hosts,
                "livy.server.recovery.zk-state-store.key-prefix": prefix,
            }
            found.append(collect_once(work_dir / f"zk-{number}", settings, count, finished, zk_count))
            try:
                found[-1]["raw"] = raw_deletes(client, f"/raw{number}", 2 * count)
            except KazooException as err:
                say(f"collection: anchor failed ({err!r}); reported as nan")
                found[-1]["raw"] = float("nan")
            say(f"collection: anchor: {2 * count:,} znodes deleted by plain kazoo, all in flight, in {found[-1]['raw']:.2f}s")
    return found


def raw_deletes(client: KazooClient, parent: str, count: int) -> float:
    """The floor: as many znodes as the store removes (record + index entry each), deleted with nothing else going on."""
    client.ensure_path(parent)
    for start in range(0, count, 1000):
        transaction = client.transaction()
        for number in range(start, min(start + 1000, count)):
            transaction.create(f"{parent}/{number}", b"x" * 150)
        transaction.commit()
    started = time.monotonic()
    pending = []
    for start in range(0, count, 1000):
        transaction = client.transaction()
        for number in range(start, min(start + 1000, count)):
            transaction.delete(f"{parent}/{number}")
        pending.append(transaction.commit_async())
    for result in pending:
        result.get()
    return time.monotonic() - started


def run(work_dir: Path, quick: bool) -> list[Row]:
    """ZooKeeper is the target; the filesystem store runs on tmpfs and, in the full run, on the work disk."""
    count, rounds = (10_000, 1) if quick else (40_000, 5)
    work_dir.mkdir(parents=True, exist_ok=True)
    say(f"collection: {count:,} finished sessions expiring together, ZooKeeper, {rounds} round(s)")
    zookeeper = zookeeper_rounds(work_dir, count, rounds)
    say(f"collection: {count:,} with the filesystem store on tmpfs (/dev/shm)")
    tmpfs = filesystem_rounds(work_dir, Path("/dev/shm"), count, 1)
    bench = f"3. collection of {count:,}"
    rows = [
        Row(
            bench,
            "ZooKeeper (loopback): expiry -> gone from memory and store",
            spread([r["both"] for r in zookeeper], "{:.2f} s"),
            target=f"<= {TARGET_ZOOKEEPER:g} s",
            anchor="records and index entries both gone",
            met=max(r["both"] for r in zookeeper) <= TARGET_ZOOKEEPER,
        ),
        Row(
            bench,
            f"anchor: plain kazoo deleting {2 * count:,} znodes (a record and an index entry each), all in flight",
            spread([r["raw"] for r in zookeeper], "{:.2f} s"),
            anchor="same ZooKeeper, same run: the floor",
        ),
        detail(bench, "ZooKeeper", zookeeper),
        detail(bench, "filesystem store on tmpfs", tmpfs),
    ]
    if not quick:
        say(f"collection: {count:,} with the filesystem store on the work disk ({work_dir})")
        rows.append(detail(bench, "filesystem store on the work disk", filesystem_rounds(work_dir, work_dir, count, 1)))
    return rows


def detail(bench: str, store: str, found: list[dict[str, float]]) -> Row:
    def cell(key: str) -> str:
        return f"{median([r[key] for r in found]):.2f} s"

    return Row(
        bench,
        f"{store}: gone from memory / store / driver logs; slowest API answer meanwhile",
        f"{cell('memory')} / {cell('store')} / {cell('logs')}; {cell('stall')}",
        anchor="from the common expiry",
    )
