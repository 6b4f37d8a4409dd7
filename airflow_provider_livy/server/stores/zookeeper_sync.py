"""The ZooKeeper store catching up with memory after a lost connection, a failed write or a held fence.

When the connection is lost, the store remembers by id what it could not write. Once kazoo is
connected again (or the fence armed again), those ids are written from what memory holds then:
records, index entries and the id counter, after listing what ZooKeeper has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException

from airflow_provider_livy.server.fence import Fence, FenceHeld, FenceRefused
from airflow_provider_livy.server.stores.base import RecordLookup
from airflow_provider_livy.server.stores.index import chunks, encode_state, entry_id, entry_name
from airflow_provider_livy.server.stores.zookeeper_writes import Known, commit, guard, wait

log = logging.getLogger(__name__)

RESYNC_RETRY_DELAY = 1.0
RESYNC_CHUNK = 300  # ids per transaction: each may need up to 3 operations


class CatchUp:
    """The connection's state as kazoo reports it, the ids memory must still write, and the re-sync writing them."""

    def __init__(self, client: KazooClient, known: Known, state_path: str, fence: Fence | None, hosts: str) -> None:
        self.client = client
        self.known = known
        self.state_path = state_path
        self.fence = fence
        self.hosts = hosts
        self.connected = True
        self.dirty: set[int] = set()  # ids whose znodes must be brought back in line with memory
        self.loop: asyncio.AbstractEventLoop | None = None
        self.resyncing = False
        self.lookup: RecordLookup = lambda _id: None
        self.next_id: Callable[[], int] = lambda: 0

    def on_state(self, state: str) -> None:
        """kazoo's listener (called from kazoo's thread)."""
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            if self.connected:
                log.warning("lost ZooKeeper at %s: serving reads, refusing creations until it is back", self.hosts)
            self.connected = False
        elif state == KazooState.CONNECTED and not self.connected:
            self.connected = True
            log.info("connected to ZooKeeper at %s again", self.hosts)
            self.kick_soon()

    def kick_soon(self) -> None:
        """Catch up from any thread: reconnected, or the fence armed again."""
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed: shutting down
                self.loop.call_soon_threadsafe(self.kick)

    def kick(self) -> None:
        if self.dirty and self.connected and not self.resyncing and self.loop is not None:
            self.resyncing = True
            self.loop.create_task(self._resync())

    async def _resync(self) -> None:
        try:
            while self.dirty and self.connected:
                ids, self.dirty = self.dirty, set()
                try:
                    await self._write_from_memory(sorted(ids))
                except FenceHeld:
                    self.dirty.update(ids)  # written once the fence is armed again (it kicks)
                    return
                except FenceRefused:
                    return  # another server leads and has its own view; this one's is stale
                except (KazooException, TimeoutError) as err:
                    self.dirty.update(ids)
                    log.warning("re-syncing %d batches with ZooKeeper failed (%s); retrying", len(ids), type(err).__name__)
                    await asyncio.sleep(RESYNC_RETRY_DELAY)
                else:
                    log.info("ZooKeeper re-synced with memory for %d batches", len(ids))
        finally:
            self.resyncing = False

    async def _write_from_memory(self, ids: list[int]) -> None:
        """List what is there, then write records, index entries and counter as memory has them now."""
        known = self.known
        present = {int(n) for n in await wait(self.client.get_children_async(known.batch_path)) if n.isdigit()}
        entries: dict[int, list[str]] = {}
        for name in await wait(self.client.get_children_async(known.index_path)):
            if (batch_id := entry_id(name)) is not None:
                entries.setdefault(batch_id, []).append(name)
        for chunk in chunks(ids, RESYNC_CHUNK):
            transaction = self.client.transaction()
            checks = guard(self.fence, transaction)
            for batch_id in chunk:
                known.forget(batch_id)
                if batch_id in present:
                    known.found(batch_id)
                names = entries.get(batch_id, [])
                record = self.lookup(batch_id)
                keep = entry_name(record) if record is not None else None
                if keep in names:
                    known.index[batch_id] = keep
                for name in names:
                    if name != keep:
                        transaction.delete(f"{known.index_path}/{name}")
                if record is not None:
                    known.record_ops(transaction, record)
                elif batch_id in present:
                    transaction.delete(f"{known.batch_path}/{batch_id}")
                    known.present.discard(batch_id)
            transaction.set_data(self.state_path, encode_state(self.next_id()))
            await commit(transaction, self.fence, checks)
