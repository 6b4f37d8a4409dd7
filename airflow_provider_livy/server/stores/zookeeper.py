"""The ZooKeeper state store: Livy's znodes under `/<key-prefix>/v1/batch`, plus the index (stores.index).

Every write is one kazoo transaction sent asynchronously and awaited on the event loop, so a
POST costs one round trip (record, index entry and id counter together) and the loop never
blocks on ZooKeeper. Requests from one session are applied in the order they were sent, so
fire-and-forget state updates land in order.

When the connection is lost, reads are unaffected (they never touch the store), creations are
refused with StoreUnavailable (503), and other writes are remembered by id and written once kazoo
is connected again (zookeeper_sync). The parts: the connection (zookeeper_connection), the
transactions (zookeeper_writes), the reads (zookeeper_reads), the removals (zookeeper_removal).

With several servers on one ZooKeeper (recovery mode ha), the store is given the leader's `Fence`
(server.fence): every transaction starts with its checks, so a server that no longer leads writes
nothing. A refused write is dropped, not retried; a write made while the fence is held (the
connection suspended) is kept as unwritten, as when ZooKeeper is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kazoo.exceptions import KazooException
from kazoo.interfaces import IAsyncResult

from airflow_provider_livy.server.fence import Fence, FenceHeld, FenceRefused
from airflow_provider_livy.server.stores.base import RecordLookup, StoreUnavailable
from airflow_provider_livy.server.stores.index import STATE_KEY, Snapshot, chunks, encode_state, family_dirs
from airflow_provider_livy.server.stores.zookeeper_connection import CONNECT_TIMEOUT, open_client, prepare, shut, warn_if_open
from airflow_provider_livy.server.stores.zookeeper_reads import read_records, scan
from airflow_provider_livy.server.stores.zookeeper_removal import send_removal
from airflow_provider_livy.server.stores.zookeeper_sync import RESYNC_CHUNK, CatchUp
from airflow_provider_livy.server.stores.zookeeper_writes import Known, committed, fail, guard, nothing
from airflow_provider_livy.zookeeper_auth import ZooKeeperAuth

log = logging.getLogger(__name__)


class ZooKeeperStore:
    def __init__(
        self,
        hosts: str,
        prefix: str = "livy",
        connect_timeout: float = CONNECT_TIMEOUT,
        family: str = "batch",
        *,
        auth: ZooKeeperAuth | None = None,
        fence: Fence | None = None,
    ) -> None:
        root = "/" + prefix.strip("/")
        self.hosts = hosts
        self.auth = auth
        self.fence = fence
        records, index = family_dirs(family)
        self.batch_path = f"{root}/{records}"
        self.index_path = f"{root}/{index}"
        self.state_path = f"{self.batch_path}/{STATE_KEY}"
        self._known = Known(self.batch_path, self.index_path, restricted=auth is not None)
        self.client = open_client(hosts, auth, connect_timeout)
        self._sync = CatchUp(self.client, self._known, self.state_path, fence, hosts)
        self.client.add_listener(self._sync.on_state)
        prepare(self.client, hosts, auth, root, dirs=(self.batch_path, self.index_path), state_path=self.state_path)
        warn_if_open(auth, family, root, hosts)
        if fence is not None:
            fence.when_armed(self._sync.kick_soon)

    @property
    def connected(self) -> bool:
        return self._sync.connected

    @property
    def _dirty(self) -> set[int]:
        """The ids still to be written from memory (read by tests and the HA benchmark)."""
        return self._sync.dirty

    def bind(self, lookup: RecordLookup, next_session_id: Callable[[], int]) -> None:
        self._sync.lookup, self._sync.next_id = lookup, next_session_id

    def scan(self) -> Snapshot:
        return scan(self.client, self._known, self.state_path, self.fence, self.hosts)

    def read_records(self, ids: Iterable[int]) -> list[tuple[int, bytes | None, float]]:
        return read_records(self.client, self.batch_path, self.hosts, ids)

    def save(self, record: dict[str, Any], next_session_id: int | None = None) -> Awaitable[None]:
        """The transaction is sent at the call: ZooKeeper applies one session's requests in the order sent."""
        self._sync.loop = asyncio.get_running_loop()
        batch_id = record["id"]
        if not self._sync.connected:
            self._sync.dirty.add(batch_id)
            if next_session_id is not None:
                return fail(StoreUnavailable(f"ZooKeeper at {self.hosts} is not connected; nothing was created, retry shortly"))
            return nothing()
        transaction = self.client.transaction()
        try:
            checks = guard(self.fence, transaction)
        except FenceHeld:
            self._sync.dirty.add(batch_id)
            if next_session_id is not None:
                return fail(StoreUnavailable("the ZooKeeper connection is suspended; nothing was created, retry shortly"))
            return nothing()
        except FenceRefused as err:
            return fail(StoreUnavailable(str(err))) if next_session_id is not None else nothing()
        self._known.record_ops(transaction, record)
        if next_session_id is not None:
            transaction.set_data(self.state_path, encode_state(next_session_id))
        return self._settle_save(transaction.commit_async(), batch_id, next_session_id, checks)

    async def _settle_save(self, sent: IAsyncResult, batch_id: int, next_session_id: int | None, checks: int) -> None:
        try:
            await committed(sent, self.fence, checks)
        except FenceRefused as err:
            if next_session_id is not None:
                raise StoreUnavailable(str(err)) from None
        except (KazooException, TimeoutError) as err:
            self._sync.dirty.add(batch_id)
            self._sync.kick()
            if next_session_id is not None:
                raise StoreUnavailable(f"ZooKeeper at {self.hosts} did not take the record ({type(err).__name__})") from None
            log.warning("batch %s not written to ZooKeeper (%s); will write it once reconnected", batch_id, type(err).__name__)

    def save_many(self, records: list[dict[str, Any]]) -> Awaitable[None]:
        """Recovery's re-saves, many records per transaction, all sent at the call; what fails is re-synced."""
        self._sync.loop = asyncio.get_running_loop()
        sent: list[tuple[list[int], int, IAsyncResult]] = []
        for chunk in chunks(records, RESYNC_CHUNK):
            ids = [record["id"] for record in chunk]
            if not self._sync.connected:
                self._sync.dirty.update(ids)
                continue
            transaction = self.client.transaction()
            try:
                checks = guard(self.fence, transaction)
            except FenceHeld:
                self._sync.dirty.update(ids)
                continue
            except FenceRefused:
                break
            for record in chunk:
                self._known.record_ops(transaction, record)
            sent.append((ids, checks, transaction.commit_async()))
        return self._settle_many(sent)

    async def _settle_many(self, sent: list[tuple[list[int], int, IAsyncResult]]) -> None:
        for ids, checks, result in sent:
            try:
                await committed(result, self.fence, checks)
            except FenceRefused:
                continue
            except (KazooException, TimeoutError) as err:
                self._sync.dirty.update(ids)
                self._sync.kick()
                log.warning("%d records not written to ZooKeeper (%s); will retry", len(ids), type(err).__name__)

    def remove(self, ids: Iterable[int]) -> Awaitable[None]:
        """Start removing now (even before the event loop runs); the awaitable ends when all answered.
        What fails is re-synced (zookeeper_removal)."""
        ids = list(ids)
        try:
            checks = () if self.fence is None else self.fence.current()
        except FenceRefused as err:  # a DELETE answers 503: the leader still holds the record
            return fail(StoreUnavailable(str(err)))
        except FenceHeld as err:  # written from memory if this server still leads once reconnected
            self._sync.dirty.update(ids)
            return fail(StoreUnavailable(str(err)))
        if not self._sync.connected:
            self._sync.dirty.update(ids)
            return nothing()
        return self._settle_removal(send_removal(self.client, self._known, self.fence, ids, checks))

    async def _settle_removal(self, sent: concurrent.futures.Future[list[int]]) -> None:
        failed = await asyncio.wrap_future(sent)
        self._sync.loop = asyncio.get_running_loop()
        if failed:
            self._sync.dirty.update(failed)
            self._sync.kick()

    def close(self) -> None:
        shut(self.client)
