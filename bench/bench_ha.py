"""Benchmark: several servers on one ZooKeeper: what the fence costs, and how fast leadership moves.

(a) Fenced against unfenced writes through the ZooKeeper store, alternating rounds on one
ZooKeeper: the create rate (record, index entry and id counter in one transaction, as a POST
writes them, 64 in flight as from 64 clients) and the delete rate (one removal per DELETE, 64 in
flight). The fenced store's transactions carry the leader's two checks (server.fence), from a
real `Leadership` that leads its key prefix. Target: fenced >= 0.9x unfenced.

(b) Leadership moving between contender processes (tests/ha_contender.py, each creating records
through a fenced store while it leads), session timeout 10 s (the default): kill -9 of the leader
to another taking the lead, and SIGTERM of the leader (a clean stop) to another taking the lead.
Targets: session timeout + 2 s, and 1 s. These are the election's times; the server's recovery of
its records on takeover comes on top.

Run alone: .venv/bin/python -m bench.bench_ha [--quick]
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import Row, median, say, spread

IN_FLIGHT = 64
SESSION_TIMEOUT = 10.0


async def windowed(calls: list[Callable[[], Awaitable[None]]]) -> float:
    """Seconds to make every call with IN_FLIGHT awaiting at once."""
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(call: Callable[[], Awaitable[None]]) -> None:
        async with limit:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(one(call) for call in calls))
    return time.perf_counter() - start


def record(batch_id: int) -> dict:
    return {"id": batch_id, "createdAt": time.time(), "state": "running", "owner": "bench", "appTag": f"livy-batch-{batch_id}"}


async def create_then_delete(store, count: int, first_id: int) -> tuple[float, float]:
    """(creates/s, deletes/s) for `count` records; every call must succeed."""
    ids = range(first_id, first_id + count)
    seconds = await windowed([lambda i=i: store.save(record(i), i + 1) for i in ids])
    created = count / seconds
    seconds = await windowed([lambda i=i: store.remove([i]) for i in ids])
    assert not store._dirty, "a write failed during the benchmark"
    return created, count / seconds


def fence_rows(hosts: str, quick: bool) -> list[Row]:
    from airflow_provider_livy.server.leadership import Leadership
    from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

    count, rounds = (1000, 1) if quick else (3000, 10)
    fenced_prefix = f"bench-fenced-{uuid.uuid4().hex[:8]}"
    leadership = Leadership(hosts, fenced_prefix, "http://bench", SESSION_TIMEOUT).start()
    deadline = time.monotonic() + 30
    while not leadership.leading:
        assert time.monotonic() < deadline, "the benchmark's leadership never led"
        time.sleep(0.05)
    stores = {
        "unfenced": ZooKeeperStore(hosts, f"bench-plain-{uuid.uuid4().hex[:8]}"),
        "fenced": ZooKeeperStore(hosts, fenced_prefix, fence=leadership.fence),
    }
    rates: dict[str, dict[str, list[float]]] = {kind: {"create": [], "delete": []} for kind in stores}
    try:

        async def measure() -> None:
            for store in stores.values():
                await create_then_delete(store, 200, 10_000_000)  # warm-up: connections, code paths
            for n in range(rounds):
                for kind, store in stores.items() if n % 2 == 0 else reversed(stores.items()):
                    created, deleted = await create_then_delete(store, count, n * count)
                    rates[kind]["create"].append(created)
                    rates[kind]["delete"].append(deleted)
                    say(f"{kind}: {created:.0f} creates/s, {deleted:.0f} deletes/s")

        asyncio.run(measure())
        assert leadership.fence.refused == 0
    finally:
        for store in stores.values():
            store.close()
        leadership.stop()
    rows = []
    for op in ("create", "delete"):
        plain, fenced = rates["unfenced"][op], rates["fenced"][op]
        ratios = [f / p for f, p in zip(fenced, plain, strict=True)]
        rows += [
            Row("ha", f"unfenced {op}s through the ZooKeeper store, per second ({IN_FLIGHT} in flight)", spread(plain)),
            Row("ha", f"fenced {op}s (two checks per transaction), per second", spread(fenced)),
            Row(
                "ha",
                f"fenced vs unfenced {op} rate",
                spread(ratios, "{:.2f}"),
                ">= 0.9",
                "ratio per alternating round, median; same ZooKeeper, same run",
                median(ratios) >= 0.9,
            ),
        ]
    return rows


def failover_rows(hosts: str, quick: bool) -> list[Row]:
    from tests.test_leadership import Contender, first_to_lead

    rounds = 1 if quick else 3
    crash: list[float] = []
    clean: list[float] = []
    for kind, times, stop in (
        ("kill -9", crash, lambda c: c.proc.kill()),
        ("SIGTERM", clean, lambda c: c.proc.send_signal(signal.SIGTERM)),
    ):
        for _ in range(rounds if kind == "kill -9" else rounds + 2):
            prefix = f"bench-ha-{uuid.uuid4().hex[:8]}"
            first = Contender(hosts, prefix, "first", SESSION_TIMEOUT)
            second = None
            try:
                first.leads(30)
                second = Contender(hosts, prefix, "second", SESSION_TIMEOUT)
                url = first.url
                second.wait_for(lambda e, url=url: e["event"] == "role" and e["leader"] == url, 30)
                first.wait_for(lambda e: e["event"] == "ack", 10)
                asked = time.time()
                stop(first)
                took = first_to_lead([second], asked, SESSION_TIMEOUT + 10)
                times.append(took["at"] - asked)
                say(f"{kind}: the other led after {times[-1]:.2f} s")
            finally:
                first.stop()
                if second is not None:
                    second.stop()
    return [
        Row(
            "ha",
            f"kill -9 of the leader -> another leads (session timeout {SESSION_TIMEOUT:g} s; election only)",
            spread(crash, "{:.2f} s"),
            f"<= {SESSION_TIMEOUT + 2:g} s",
            "Spark standalone master HA 1-2 min; Kubernetes leases 15 s; Lighter up to 10 min",
            median(crash) <= SESSION_TIMEOUT + 2,
        ),
        Row(
            "ha",
            "SIGTERM of the leader -> another leads (clean handover; election only)",
            spread(clean, "{:.3f} s"),
            "<= 1 s",
            "",
            max(clean) <= 1.0,
        ),
    ]


def run(work_dir: Path, quick: bool) -> list[Row]:
    from tests.zookeeper import ZooKeeperServer

    work_dir.mkdir(parents=True, exist_ok=True)
    zookeeper = ZooKeeperServer(work_dir / "zookeeper").start()
    try:
        return fence_rows(zookeeper.hosts, quick) + failover_rows(zookeeper.hosts, quick)
    finally:
        zookeeper.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="livy-bench-ha-") as tmp:
        for row in run(Path(tmp), "--quick" in sys.argv):
            print(f"{row.figure}: {row.value}" + (f" (target {row.target}, met: {row.met})" if row.target else ""))
