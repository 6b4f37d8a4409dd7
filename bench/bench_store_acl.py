"""Benchmark: what the creator-only ACL costs the ZooKeeper store's writes (livy.server.recovery.zk-state-store.auth).

Two ZooKeeperStores on one real ZooKeeper (tests/zookeeper.py), one without an identity (open ACLs)
and one logged in with digest, write the same work in alternating rounds: 2,000 creations (record,
index entry and id counter in one transaction each, awaited one by one, as POSTs are) and then 2,000
updates of those records (setData). The figures are medians over the rounds and the ratio of the two
medians measured side by side. A third row times the first write after a restart of records left with
the open ACL, which re-creates each record (delete and create in one transaction) instead of a setData.

Run alone: .venv/bin/python -m bench.bench_store_acl [--quick]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore
from airflow_provider_livy.zookeeper_auth import parse_auth
from bench.common import Row, median, say, spread
from tests.zookeeper import ZooKeeperServer

AUTH = "digest:livy:bench-password"


def record(batch_id: int, now: float, state: str = "running") -> dict:
    return {
        "id": batch_id,
        "name": None,
        "appId": None,
        "appTag": f"livy-batch-{batch_id}-bench",
        "owner": "bench",
        "proxyUser": None,
        "version": 1,
        "state": state,
        "createdAt": now,
        "finishedAt": None,
        "request": None,
    }


async def writes(store: ZooKeeperStore, count: int, state: str, counter: bool) -> float:
    """Seconds for `count` awaited saves, one after the other."""
    now = time.time()
    started = time.perf_counter()
    for batch_id in range(count):
        await store.save(record(batch_id, now, state), batch_id + 1 if counter else None)
    return time.perf_counter() - started


def round_once(hosts: str, auth: str | None, count: int) -> tuple[float, float]:
    store = ZooKeeperStore(hosts, f"bench-{uuid.uuid4().hex[:8]}", auth=parse_auth(auth))
    store.scan()
    try:
        create = asyncio.run(writes(store, count, "running", counter=True))
        update = asyncio.run(writes(store, count, "starting", counter=False))
        return count / create, count / update
    finally:
        store.close()


def reopened_open_records(hosts: str, count: int) -> tuple[float, float]:
    """Records written open, then re-written by a server with an identity (re-create) and by one without (setData)."""
    rates = []
    for auth in (AUTH, None):
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        first = ZooKeeperStore(hosts, prefix)
        first.scan()
        asyncio.run(writes(first, count, "running", counter=True))
        first.close()
        again = ZooKeeperStore(hosts, prefix, auth=parse_auth(auth))
        again.scan()
        rates.append(count / asyncio.run(writes(again, count, "starting", counter=False)))
        again.close()
    return rates[0], rates[1]


def run(work_dir: Path, quick: bool) -> list[Row]:
    count, rounds = (500, 3) if quick else (2000, 7)
    work_dir.mkdir(parents=True, exist_ok=True)
    zookeeper = ZooKeeperServer(work_dir / "zookeeper").start()
    try:
        results: dict[str, list[tuple[float, float]]] = {"open": [], "acl": []}
        for number in range(rounds):
            for name, auth in (("open", None), ("acl", AUTH)):
                results[name].append(round_once(zookeeper.hosts, auth, count))
            o, a = results["open"][-1], results["acl"][-1]
            say(
                f"store ACL round {number + 1}: creations/s open {o[0]:.0f} acl {a[0]:.0f}; "
                f"updates/s open {o[1]:.0f} acl {a[1]:.0f}"
            )
        recreate, set_data = reopened_open_records(zookeeper.hosts, count)
    finally:
        zookeeper.stop()
    rows = []
    for column, what in ((0, "creations"), (1, "updates")):
        opened = [r[column] for r in results["open"]]
        restricted = [r[column] for r in results["acl"]]
        rows.append(
            Row(
                "13. ZooKeeper ACL",
                f"awaited {what}/s with the creator-only ACL ({count:,} per round)",
                spread(restricted),
                anchor=f"open ACL, same run: {spread(opened)}",
                note=f"ratio of medians {median(restricted) / median(opened):.2f}",
            )
        )
    rows.append(
        Row(
            "13. ZooKeeper ACL",
            "first write/s after a restart of records left open (delete + create in one transaction)",
            f"{recreate:.0f}",
            anchor=f"setData without an identity, same run: {set_data:.0f}",
            note=f"ratio {recreate / set_data:.2f}",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    for row in run(Path(tempfile.mkdtemp(prefix="bench-acl-")), quick):
        say(f"{row.figure}: {row.value}; anchor {row.anchor}; {row.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
