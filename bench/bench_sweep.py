"""Benchmark: the ZooKeeper sweep over 40,000 orphaned records (target: at most 10 s on loopback).

A real ZooKeeper (tests/zookeeper.py) holds 40,000 records in Apache Livy's format beside the
`state` node, none of which our server (started empty, on loopback) holds: every one answers 404.
The timed part is exactly what the DAG's zookeeper_sweep task does after connecting: list, read
every record (multi-read), ask the server what it holds, decide, delete in transactions. For
contrast, one round reads with kazoo's one-request-per-znode `get_async` instead.

Run alone: .venv/bin/python -m bench.bench_sweep [--quick]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from kazoo.client import KazooClient

from bench.common import Row, livy_server, say, spread

RECORDS = 40_000
TARGET_SECONDS = 10.0
MIN_AGE = 1.0
CREATE_CHUNK = 1000


def seed(client: KazooClient, prefix: str, count: int) -> None:
    """`count` orphaned records as Apache Livy writes them, plus its id counter."""
    parent = f"/{prefix}/v1/batch"
    client.ensure_path(parent)
    client.create(f"{parent}/state", json.dumps({"nextSessionId": count}).encode())
    for start in range(0, count, CREATE_CHUNK):
        transaction = client.transaction()
        for batch_id in range(start, min(start + CREATE_CHUNK, count)):
            record = {
                "id": batch_id,
                "name": None,
                "appId": f"application_1700000000000_{batch_id:04d}",
                "appTag": f"livy-batch-{batch_id}-AbCdEfGh",
                "owner": "scheduler",
                "proxyUser": None,
                "version": 1,
            }
            transaction.create(f"{parent}/{batch_id}", json.dumps(record).encode())
        transaction.commit()


def sweep_once(client: KazooClient, prefix: str, conn_id: str, multi_read: bool) -> tuple[float, dict]:
    from airflow_provider_livy.hooks.livy import LivyHook
    from airflow_provider_livy.maintenance.tasks import HTTP_RETRIES, server_ids
    from airflow_provider_livy.maintenance.zookeeper_sweep import Rules, sweep_zookeeper

    hook = LivyHook(conn_id, retries=HTTP_RETRIES)
    try:
        start = time.perf_counter()
        report = sweep_zookeeper(
            client, prefix, lambda: server_ids(hook), Rules(min_age=MIN_AGE, untouched=3600), multi_read=multi_read
        )
        elapsed = time.perf_counter() - start
    finally:
        hook.close()
    return elapsed, report.as_dict()


def run(work_dir: Path, quick: bool) -> list[Row]:
    from tests.zookeeper import ZooKeeperServer

    rounds = 1 if quick else 3
    work_dir.mkdir(parents=True, exist_ok=True)
    zookeeper = ZooKeeperServer(work_dir / "zookeeper").start()
    timings: list[float] = []
    fallback: list[float] = []
    try:
        with livy_server(work_dir / "server", {}) as server:
            conn_id = "livy_bench_sweep"
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
                {"conn_type": "livy_batch", "host": "127.0.0.1", "port": server.port}
            )
            client = KazooClient(hosts=zookeeper.hosts)
            client.start(timeout=30)
            try:
                for number in range(rounds + (0 if quick else 1)):
                    multi = number < rounds
                    prefix = f"bench-sweep-{number}"
                    seed(client, prefix, RECORDS)
                    time.sleep(MIN_AGE)  # every record is now older than min_age
                    elapsed, report = sweep_once(client, prefix, conn_id, multi_read=multi)
                    left = client.get_children(f"/{prefix}/v1/batch")
                    if report["deleted"] != RECORDS or left != ["state"]:
                        raise RuntimeError(f"the sweep left {len(left)} znodes: {report}")
                    (timings if multi else fallback).append(elapsed)
                    how = "multi-read" if multi else "get_async fallback"
                    say(f"sweep round {number + 1}: {RECORDS} orphaned znodes swept in {elapsed:.2f}s ({how})")
            finally:
                client.stop()
                client.close()
    finally:
        zookeeper.stop()
    best = min(timings)
    rows = [
        Row(
            "5. ZooKeeper sweep",
            f"ZooKeeper sweep of {RECORDS:,} orphaned records (server up, all 404), seconds",
            spread(timings, "{:.2f}"),
            target=f"<= {TARGET_SECONDS:g} s",
            anchor="list, multi-read, ask the server, transactions of 1,000 deletes",
            met=max(timings) <= TARGET_SECONDS,
        )
    ]
    if fallback:
        rows.append(
            Row(
                "5. ZooKeeper sweep",
                "same sweep reading with one get_async per znode (ZooKeeper < 3.6 fallback), seconds",
                spread(fallback, "{:.2f}"),
                anchor="kazoo's per-request cost, for contrast",
            )
        )
    say(f"sweep: best {best:.2f}s")
    return rows


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="livy-bench-sweep-") as tmp:
        for row in run(Path(tmp), "--quick" in sys.argv):
            print(f"{row.figure}: {row.value} (target {row.target or '-'}, met {row.met})")
