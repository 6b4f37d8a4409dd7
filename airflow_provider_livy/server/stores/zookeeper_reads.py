"""Reading the ZooKeeper store: the start-up scan of counter, records and index, and the records themselves.

Records are read with ZooKeeper's multi-read (zookeeper_multi), 1,000 per request. The scan also
drops duplicate index entries, unless another server leads (the fence refuses): tidying is the leader's.
"""

from __future__ import annotations

from collections.abc import Iterable

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from airflow_provider_livy.server.fence import Fence, FenceHeld, FenceRefused
from airflow_provider_livy.server.stores.index import Snapshot, build_snapshot, chunks, decode_state
from airflow_provider_livy.server.stores.zookeeper_writes import REQUEST_TIMEOUT, Known, guard
from airflow_provider_livy.zookeeper_multi import TRANSACTION_OPS, read_many


def scan(client: KazooClient, known: Known, state_path: str, fence: Fence | None, hosts: str) -> Snapshot:
    asked = (
        client.get_async(state_path),
        client.get_children_async(known.batch_path),
        client.get_children_async(known.index_path),
    )
    try:
        (state, _), records, index = (result.get(timeout=REQUEST_TIMEOUT) for result in asked)
    except (KazooException, KazooTimeoutError) as err:
        raise ConnectionError(f"reading the state store from ZooKeeper at {hosts} failed: {err!r}") from None
    snap = build_snapshot(decode_state(state), records, index)
    for chunk in chunks(snap.duplicates, TRANSACTION_OPS):
        transaction = client.transaction()
        try:
            guard(fence, transaction)
        except (FenceHeld, FenceRefused):
            break  # tidying is the leader's; the duplicates do no harm meanwhile
        for name in chunk:
            transaction.delete(f"{known.index_path}/{name}")
        transaction.commit()
    known.adopt(snap)
    return snap


def read_records(client: KazooClient, batch_path: str, hosts: str, ids: Iterable[int]) -> list[tuple[int, bytes | None, float]]:
    """Multi-reads of 1,000, all sent before the first answer is awaited (pipelined gets on a server before 3.6)."""
    ids = list(ids)
    try:
        reads = read_many(client, [f"{batch_path}/{batch_id}" for batch_id in ids])
    except (KazooException, KazooTimeoutError) as err:
        raise ConnectionError(f"reading records from ZooKeeper at {hosts} failed: {err!r}") from None
    rows: list[tuple[int, bytes | None, float]] = []
    for batch_id, read in zip(ids, reads, strict=True):
        if isinstance(read, KazooException):
            raise ConnectionError(f"reading record {batch_id} from ZooKeeper at {hosts} failed: {read!r}")
        rows.append((batch_id, None, 0.0) if read is None else (batch_id, read[0], read[1].mtime / 1000))
    return rows
