"""The state stores themselves: layout on disk and in ZooKeeper, one transaction per write, safe concurrent writes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from kazoo.client import KazooClient

from airflow_provider_livy.server.stores.filesystem import FileSystemStore, write_atomic
from airflow_provider_livy.server.stores.index import build_snapshot, entry_finished, entry_name
from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore


def record(batch_id: int, created: float, finished: float | None = None, state: str = "running") -> dict:
    return {"id": batch_id, "name": None, "appId": None, "appTag": f"t-{batch_id}", "owner": None, "proxyUser": None} | {
        "version": 1,
        "state": state,
        "createdAt": created,
        "finishedAt": finished,
    }


def test_filesystem_layout_follows_the_batch(tmp_path: Path) -> None:
    store = FileSystemStore(f"file://{tmp_path}")
    created = time.time()

    async def scenario() -> None:
        await store.save(record(0, created), next_session_id=1)
        assert json.loads((tmp_path / "v1/batch/state").read_bytes()) == {"nextSessionId": 1}
        assert json.loads((tmp_path / "v1/batch/0").read_bytes())["state"] == "running"
        assert [p.name for p in (tmp_path / "v1/batch-index").iterdir()] == [f"0_{round(created * 1000)}_"]
        await store.save(record(0, created, created + 2, "success"))
        assert [p.name for p in (tmp_path / "v1/batch-index").iterdir()] == [entry_name(record(0, created, created + 2))]
        await store.remove([0])

    asyncio.run(scenario())
    store.close()
    assert sorted(p.name for p in (tmp_path / "v1/batch").iterdir()) == ["state"]
    assert not list((tmp_path / "v1/batch-index").iterdir())


def test_filesystem_writes_are_atomic_under_concurrent_writers(tmp_path: Path) -> None:
    """Livy's store shares one temp name per key and races; ours never shows a torn or missing record."""
    target = tmp_path / "v1" / "batch" / "7"
    target.parent.mkdir(parents=True)
    write_atomic(target, b'{"id": 7, "writer": -1}')
    problems: list[str] = []
    stop = threading.Event()

    def writer(number: int) -> None:
        try:
            for round_ in range(200):
                write_atomic(target, json.dumps({"id": 7, "writer": number, "round": round_, "pad": "x" * 4000}).encode())
        except OSError as err:
            problems.append(f"writer {number}: {err}")

    def reader() -> None:
        while not stop.is_set():
            try:
                json.loads(target.read_bytes())
            except (OSError, ValueError) as err:
                problems.append(f"reader: {err}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    assert not problems, problems[:5]
    assert json.loads(target.read_bytes())["round"] == 199
    assert [p.name for p in target.parent.iterdir()] == ["7"], "no temp file left behind"


def test_zookeeper_creation_is_one_transaction(zookeeper, zk_prefix: str) -> None:
    """Record, index entry and id counter are written by one request: they share one zxid."""
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix)
    created = time.time()

    async def create() -> None:
        await store.save(record(3, created), next_session_id=4)

    asyncio.run(create())
    client = KazooClient(hosts=zookeeper.hosts)
    client.start()
    try:
        data, stat = client.get(f"/{zk_prefix}/v1/batch/3")
        assert json.loads(data)["createdAt"] == created
        state, state_stat = client.get(f"/{zk_prefix}/v1/batch/state")
        assert json.loads(state) == {"nextSessionId": 4}
        entry = f"{3}_{round(created * 1000)}_"
        assert client.get_children(f"/{zk_prefix}/v1/batch-index") == [entry]
        _, entry_stat = client.get(f"/{zk_prefix}/v1/batch-index/{entry}")
        assert stat.czxid == entry_stat.czxid == state_stat.mzxid
    finally:
        client.stop()
        store.close()


def test_zookeeper_bulk_removal_and_scan(zookeeper, zk_prefix: str) -> None:
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix)
    now = time.time()

    async def fill_then_purge() -> None:
        await asyncio.gather(*(store.save(record(i, now - 100, now - 50, "success")) for i in range(1500)))
        await store.save(record(1500, now), next_session_id=1501)
        await store.remove(range(1500))

    asyncio.run(fill_then_purge())
    store.close()
    again = ZooKeeperStore(zookeeper.hosts, zk_prefix)
    try:
        snap = again.scan()
        assert snap.record_ids == {1500}
        assert list(snap.index) == [1500]
        assert snap.next_session_id == 1501
        assert again.read_records([1500, 4])[1] == (4, None, 0.0)
    finally:
        again.close()


def test_zookeeper_removal_starts_before_the_event_loop_runs(zookeeper, zk_prefix: str) -> None:
    """Recovery starts its purge while the server is still starting: the deletes go out at the call."""
    now = time.time()
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix)

    async def fill() -> None:
        await asyncio.gather(*(store.save(record(i, now - 100, now - 50, "success")) for i in range(1200)))

    asyncio.run(fill())
    client = KazooClient(hosts=zookeeper.hosts)
    client.start()
    try:
        removal = store.remove(range(1200))  # no event loop running
        deadline = time.monotonic() + 10
        while client.get_children(f"/{zk_prefix}/v1/batch") != ["state"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get_children(f"/{zk_prefix}/v1/batch") == ["state"]
        assert client.get_children(f"/{zk_prefix}/v1/batch-index") == []
        asyncio.run(removal)
    finally:
        client.stop()
        store.close()


def test_zookeeper_removal_that_fails_is_resynced(zookeeper, zk_prefix: str) -> None:
    """Someone else deleted a record first: its transaction fails whole, and the store deletes the rest from memory."""
    now = time.time()
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix)
    store.bind(lambda _id: None, lambda: 20)
    client = KazooClient(hosts=zookeeper.hosts)
    client.start()

    async def scenario() -> list[str]:
        await asyncio.gather(*(store.save(record(i, now - 100, now - 50, "success")) for i in range(20)))
        client.delete(f"/{zk_prefix}/v1/batch/7")
        await store.remove(range(20))
        assert len(client.get_children(f"/{zk_prefix}/v1/batch")) > 1, "the failed transaction removed nothing"
        deadline = time.monotonic() + 10
        while len(client.get_children(f"/{zk_prefix}/v1/batch")) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return client.get_children(f"/{zk_prefix}/v1/batch")

    try:
        assert asyncio.run(scenario()) == ["state"]
        assert client.get_children(f"/{zk_prefix}/v1/batch-index") == []
    finally:
        client.stop()
        store.close()


def test_snapshot_prefers_the_finished_entry_and_skips_foreign_names() -> None:
    snap = build_snapshot(5, ["state", "1", "2", ".2.x.tmp"], ["1_1000_", "1_1000_3000", "junk", "2_2000_"])
    assert snap.record_ids == {1, 2}
    assert snap.index == {1: "1_1000_3000", 2: "2_2000_"}
    assert entry_finished(snap.index[1]) == 3.0 and entry_finished(snap.index[2]) is None
    assert snap.duplicates == ["1_1000_"]
