"""Building and sending the ZooKeeper store's transactions.

`Known` is what this server believes ZooKeeper holds (which records exist, which may still carry the
open ACL, each id's index entry), so a write is built without asking first. A record that may still be
open is deleted and created again in the same transaction, since a setData keeps a znode's ACL. Every
transaction starts with the fence's checks (server.fence), and its answer is awaited on the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kazoo.client import TransactionRequest
from kazoo.interfaces import IAsyncResult

from airflow_provider_livy.server.fence import Fence, failures_of
from airflow_provider_livy.server.stores.index import Snapshot, encode, entry_name

REQUEST_TIMEOUT = 10.0


def _settle(future: asyncio.Future[Any], result: IAsyncResult) -> None:
    if future.done():
        return
    try:
        future.set_result(result.get_nowait())
    except Exception as err:
        future.set_exception(err)


async def wait(result: IAsyncResult) -> Any:
    """A kazoo asynchronous result, awaited on the event loop (kazoo calls back from its own thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    result.rawlink(lambda done: loop.call_soon_threadsafe(_settle, future, done))
    return await asyncio.wait_for(future, REQUEST_TIMEOUT)


async def nothing() -> None:
    return None


async def fail(error: Exception) -> None:
    raise error


def guard(fence: Fence | None, transaction: TransactionRequest) -> int:
    """The fence's checks at the head of a transaction (none without a fence); raises FenceHeld / FenceRefused."""
    return 0 if fence is None else fence.guard(transaction)


async def commit(transaction: TransactionRequest, fence: Fence | None = None, checks: int = 0) -> None:
    await committed(transaction.commit_async(), fence, checks)


async def committed(sent: IAsyncResult, fence: Fence | None = None, checks: int = 0) -> None:
    """Raise the first real failure of a sent transaction (kazoo returns them in the result list);
    FenceRefused when the failure is the fence's (its `checks` operations head the transaction)."""
    results = await wait(sent)
    if fence is not None and (refused := fence.refusal(results, checks)) is not None:
        raise refused
    failures = failures_of(results)
    if failures:
        raise failures[0]


class Known:
    """What the store holds as far as this server knows: the base of every write it builds."""

    def __init__(self, batch_path: str, index_path: str, restricted: bool) -> None:
        self.batch_path = batch_path
        self.index_path = index_path
        self.restricted = restricted  # with an identity, records found at start-up may still be open
        self.present: set[int] = set()  # ids whose record znode exists
        self.unsure: set[int] = set()  # ids whose record may still have the open ACL: re-created on the next write
        self.index: dict[int, str] = {}  # id -> its index znode

    def adopt(self, snap: Snapshot) -> None:
        self.present = set(snap.record_ids)
        self.unsure = set(snap.record_ids) if self.restricted else set()
        self.index = dict(snap.index)

    def found(self, batch_id: int) -> None:
        """A record seen in ZooKeeper by a re-sync's listing."""
        self.present.add(batch_id)
        if self.restricted:
            self.unsure.add(batch_id)

    def record_ops(self, transaction: TransactionRequest, record: dict[str, Any]) -> None:
        """Write a record and move its index entry, given what we believe the store holds."""
        batch_id = record["id"]
        path, data = f"{self.batch_path}/{batch_id}", encode(record)
        unsure = batch_id in self.unsure
        if unsure:  # a setData keeps the open ACL: replace the znode (and its index entry) in the same transaction
            transaction.delete(path)
            transaction.create(path, data)
            self.unsure.discard(batch_id)
        elif batch_id in self.present:
            transaction.set_data(path, data)
        else:
            transaction.create(path, data)
            self.present.add(batch_id)
        name, old = entry_name(record), self.index.get(batch_id)
        if name != old or (unsure and old is not None):
            if old is not None:
                transaction.delete(f"{self.index_path}/{old}")
            transaction.create(f"{self.index_path}/{name}")
            self.index[batch_id] = name

    def forget(self, batch_id: int) -> None:
        self.present.discard(batch_id)
        self.unsure.discard(batch_id)
        self.index.pop(batch_id, None)
