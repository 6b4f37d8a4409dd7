"""How long a restart takes with 40,000 records in the store, 39,000 of them long expired.

For each store (filesystem, ZooKeeper on loopback) this fills the store the way a server that
never deleted anything would leave it, starts `livy-server` with recovery on, and measures:
- answer: from spawning the server process until GET /batches answers (target: under 3 s);
- purged: from spawning until the store holds only the 1,000 live records;
- the server's own figures from its log (foreground recovery, bulk purge).
An empty store's start-up is measured too: the floor that process start and imports cost.
The filled store is synced to disk before the restart: records that expired days ago are on
disk, and unlinking a written-back file (blocks to free) costs the kernel far more than
unlinking one still only in the page cache.

Part of `python -m bench.run`; alone: .venv/bin/python -m bench.bench_recovery [--records 40000] [--expired 39000]
[--rounds N] [--compare REV]. --compare runs the server of git revision REV (git archive into a temp
directory) in alternation with the working tree's, on identical stores: before/after figures from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
from kazoo.client import KazooClient

from airflow_provider_livy.server.stores.index import encode, entry_name
from bench.common import REPO, Row, say, spread
from tests.conftest import FAKE_SPARK_HOME, free_port
from tests.zookeeper import ZooKeeperServer

DAY = 86400.0
TARGET_SECONDS = 3.0


def record(batch_id: int, state: str, created: float, finished: float | None) -> dict:
    """A record as our server writes it."""
    return {
        "id": batch_id,
        "name": None,
        "appId": f"app-20250101000000-{batch_id:04d}",
        "appTag": f"livy-batch-{batch_id}-bench",
        "owner": "bench",
        "proxyUser": None,
        "version": 1,
        "state": state,
        "createdAt": created,
        "finishedAt": finished,
        "sparkUiUrl": None,
        "pid": 2**22 + 7 if state == "running" else None,  # above pid_max's default: never alive
        "pidStart": created,
        "request": None,
    }


def make_records(total: int, expired: int) -> list[dict]:
    """Expired: finished two days ago. Live: half finished a minute ago, half 'running' under a pid long gone."""
    now = time.time()
    records = []
    for batch_id in range(total):
        if batch_id < expired:
            created, finished, state = now - 2 * DAY - 60, now - 2 * DAY, "success"
        elif batch_id % 2:
            created, finished, state = now - 120, now - 60, "dead"
        else:
            created, finished, state = now - 120, None, "running"
        records.append(record(batch_id, state, created, finished))
    return records


def fill_filesystem(root: Path, records: list[dict]) -> None:
    batch_dir, index_dir = root / "v1" / "batch", root / "v1" / "batch-index"
    batch_dir.mkdir(parents=True)
    index_dir.mkdir(parents=True)
    for rec in records:
        (batch_dir / str(rec["id"])).write_bytes(encode(rec))
        (index_dir / entry_name(rec)).touch()
    (batch_dir / "state").write_text(json.dumps({"nextSessionId": len(records)}))
    os.sync()


def fill_zookeeper(client: KazooClient, prefix: str, records: list[dict]) -> None:
    client.ensure_path(f"/{prefix}/v1/batch-index")
    client.create(f"/{prefix}/v1/batch/state", json.dumps({"nextSessionId": len(records)}).encode(), makepath=True)
    for start in range(0, len(records), 500):
        transaction = client.transaction()
        for rec in records[start : start + 500]:
            transaction.create(f"/{prefix}/v1/batch/{rec['id']}", encode(rec))
            transaction.create(f"/{prefix}/v1/batch-index/{entry_name(rec)}")
        transaction.commit()


def restart(
    settings: dict[str, str], work: Path, live: int, count_records: Callable[[], int], code: Path | None = None
) -> dict[str, float]:
    """One cold start; `code`: a source tree to run the server from instead of the installed package."""
    port = free_port()
    conf = {
        "livy.server.port": str(port),
        "livy.server.log-dir": str(work / "logs"),
        "livy.server.spark-home": str(FAKE_SPARK_HOME),
        "livy.server.session.state-retain.sec": "10m",
        "livy.server.session.max-sessions": "100000",
        **settings,
    }
    args = [sys.executable, "-m", "airflow_provider_livy.server"]
    for key, value in conf.items():
        args += ["--set", f"{key}={value}"]
    log_path = work / f"server-{port}.log"
    env = None if code is None else {**os.environ, "PYTHONPATH": str(code)}
    with open(log_path, "wb") as log_file:
        started = time.monotonic()
        # cwd: `-m` puts it first on sys.path, ahead of PYTHONPATH; in the repository it would shadow `code`
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/batches", params={"size": 1}, timeout=5)
                break
            except requests.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError(log_path.read_text()) from None
                time.sleep(0.01)
        answered = time.monotonic() - started
        total = response.json()["total"]
        assert total == live, f"expected {live} batches registered, got {total}"
        while count_records() != live:  # each count lists up to 80,000 names: not too often
            time.sleep(0.1)
        purged = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait()
    log = log_path.read_text()
    result = {"answer": answered, "purged": purged}
    if match := re.search(r"recovery: .* took ([0-9.]+)s", log):
        result["foreground"] = float(match.group(1))
    if match := re.search(r"purged (\d+) expired or unreadable records in ([0-9.]+)s", log):
        result["bulk purge"] = float(match.group(2))
    return result


def run(work_dir: Path, quick: bool) -> list[Row]:
    total, expired, rounds = (20_000, 19_500, 1) if quick else (40_000, 39_000, 5)
    work_dir.mkdir(parents=True, exist_ok=True)
    say(f"recovery: cold starts with {total:,} records, {expired:,} expired, {rounds} round(s) per store")
    found = compare(work_dir, total, expired, rounds)
    results = {store: found[f"working tree: {store}"] for store in ("filesystem, empty store", "filesystem", "zookeeper")}
    bench, rows = "4. recovery", []
    floor = [r["answer"] for r in results["filesystem, empty store"]]
    rows.append(Row(bench, "empty store: spawn -> first answer", spread(floor, "{:.2f} s"), anchor="process start and imports"))
    for store in ("filesystem", "zookeeper"):
        answer, purged = [r["answer"] for r in results[store]], [r["purged"] for r in results[store]]
        rows.append(
            Row(
                bench,
                f"{store}: spawn -> first answered API call",
                spread(answer, "{:.2f} s"),
                target=f"<= {TARGET_SECONDS:g} s",
                anchor="empty store's start-up, same run",
                met=max(answer) <= TARGET_SECONDS,
            )
        )
        rows.append(
            Row(
                bench,
                f"{store}: spawn -> store clean ({expired:,} purged)",
                spread(purged, "{:.2f} s"),
                target=f"<= {TARGET_SECONDS:g} s",
                anchor="includes the start-up",
                met=max(purged) <= TARGET_SECONDS,
            )
        )
    return rows


def export(rev: str, target: Path) -> Path:
    """The package as it was at `rev`, for side-by-side runs (read-only use of git)."""
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "airflow_provider_livy"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def compare(work: Path, total: int, expired: int, rounds: int, rev: str | None = None) -> dict[str, list[dict[str, float]]]:
    """Each round restarts every variant on a freshly filled store of each kind, variants alternating.

    Every ZooKeeper restart gets a ZooKeeper of its own: with a second 40,000-record tree filled into
    the same 256 MB server, its connections dropped during the restart's listing.
    """
    live = total - expired
    records = make_records(total, expired)
    variants: dict[str, Path | None] = {"working tree": None}
    if rev:
        variants = {rev: export(rev, work / "before"), **variants}
    results: dict[str, list[dict[str, float]]] = {}
    for number in range(rounds):
        for name, code in variants.items():
            tag = f"{number}-{len(results)}-{name.replace(' ', '-')}"
            empty = {"livy.server.recovery.mode": "recovery", "livy.server.recovery.state-store.url": str(work / f"e{tag}")}
            results.setdefault(f"{name}: filesystem, empty store", []).append(restart(empty, work, 0, lambda: 0, code))
            root = work / f"fs{tag}"
            fill_filesystem(root, records)
            fs = {**empty, "livy.server.recovery.state-store.url": str(root)}
            batch_dir = root / "v1/batch"
            figures = restart(fs, work, live, lambda d=batch_dir: sum(n.isdigit() for n in os.listdir(d)), code)
            assert len(os.listdir(root / "v1/batch-index")) == live
            results.setdefault(f"{name}: filesystem", []).append(figures)
            zookeeper = ZooKeeperServer(work / f"zookeeper{tag}").start()
            client = KazooClient(hosts=zookeeper.hosts)
            client.start()
            try:
                fill_zookeeper(client, "bench", records)
                zk = {
                    "livy.server.recovery.mode": "recovery",
                    "livy.server.recovery.state-store": "zookeeper",
                    "livy.server.recovery.state-store.url": zookeeper.hosts,
                    "livy.server.recovery.zk-state-store.key-prefix": "bench",
                }
                count = lambda c=client: sum(n.isdigit() for n in c.get_children("/bench/v1/batch"))  # noqa: E731
                figures = restart(zk, work, live, count, code)
                assert len(client.get_children("/bench/v1/batch-index")) == live
            finally:
                client.stop()
                zookeeper.stop()
            results.setdefault(f"{name}: zookeeper", []).append(figures)
            say(f"recovery round {number + 1}/{rounds} {name}: fs {results[f'{name}: filesystem'][-1]}, zk {figures}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--expired", type=int, default=39_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--compare", metavar="REV", help="also run the server of this git revision, alternating")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        results = compare(Path(tmp), args.records, args.expired, args.rounds, args.compare)
    live = args.records - args.expired
    print(f"restart with {args.records} records, {args.expired} expired, {live} live: seconds from process spawn")
    print(f"medians of {args.rounds} round(s), min-max in brackets")
    for variant, runs in results.items():
        names = [name for name in runs[0] if all(name in run for run in runs)]
        cells = []
        for name in names:
            values = [run[name] for run in runs]
            cells.append(f"{name} {statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]")
        print(f"  {variant:40s} " + "  ".join(cells))


if __name__ == "__main__":
    main()
