"""The state-store interface, and the one door every write of the server goes through.

With recovery off nothing is persisted (NullStore). The filesystem and ZooKeeper stores
implement the same calls; recovery reads them back at start-up.

Ordering is the whole point: without it, a deleted batch could come back after a restart. Every write
call SENDS its work at the call, before it returns an awaitable, and a store applies what was
sent in the order it was sent (ZooKeeper: one session, requests in order; filesystem: one
writer thread). The server makes its calls through a `StoreWriter`, which writes a session only
while memory still holds it, and always memory's current record. So once a session is deleted,
forgotten or evicted, nothing that was decided later can bring its record back, and what was
decided earlier lands before the removal. Retries after a failure write from memory too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from airflow_provider_livy.server.stores.index import Snapshot

# What recovery hands a store so it can bring itself back in line with memory after a fault:
# the current record of a batch (None once forgotten), and the current id counter.
RecordLookup = Callable[[int], dict[str, Any] | None]


class StoreUnavailable(RuntimeError):
    """The store cannot be written now (e.g. ZooKeeper lost); the API answers 503."""


class StateStore(Protocol):
    def save(self, record: dict[str, Any], next_session_id: int | None = None) -> Awaitable[None]:
        """Send one batch record (and the id counter with it when given) now; await the answer.
        With the counter, i.e. a creation, a failure raises StoreUnavailable; otherwise the store
        logs it and writes the id from memory once it can."""

    def save_many(self, records: list[dict[str, Any]]) -> Awaitable[None]:
        """Send many records in bulk now (recovery's re-saves); failures are retried by the store."""

    def remove(self, ids: Iterable[int]) -> Awaitable[None]:
        """Forget these batches' records, in bulk, ordered after every write sent before the call.
        ZooKeeper's removal starts at the call even before the event loop runs, so recovery can
        start its purge early and await it once serving."""

    def bind(self, lookup: RecordLookup, next_session_id: Callable[[], int]) -> None:
        """Where re-syncs read the truth from: the server's memory."""

    def close(self) -> None:
        """Release connections; records stay."""


class RecoverableStore(StateStore, Protocol):
    """A store that survives restarts (filesystem, ZooKeeper): what recovery needs besides writing."""

    def scan(self) -> Snapshot:
        """The id counter, the record ids and the index, without reading any record."""

    def read_records(self, ids: Iterable[int]) -> list[tuple[int, bytes | None, float]]:
        """(id, raw record or None if gone, modification time) for each id; blocking, bulk."""


class NullStore:
    """Recovery off: nothing survives a restart, so nothing is written."""

    async def save(self, record: dict[str, Any], next_session_id: int | None = None) -> None:
        return None

    async def save_many(self, records: list[dict[str, Any]]) -> None:
        return None

    async def remove(self, ids: Iterable[int]) -> None:
        return None

    def close(self) -> None:
        return None

    def bind(self, lookup: RecordLookup, next_session_id: Callable[[], int]) -> None:
        return None


class Persistable(Protocol):
    id: int

    def record(self) -> dict[str, Any]: ...


class StoreWriter:
    """The one door from the server to its store: what memory holds, in the order it was decided.

    `lookup` answers the object memory holds for an id (None once it is deleted, collected or
    evicted). A save of something memory no longer holds is dropped at the call, and the record
    written is built at the call, so a write decided before a removal is sent before it and one
    decided after it is never sent. The store's own re-syncs read memory through the same lookup.
    """

    def __init__(
        self, store: StateStore, lookup: Callable[[int], Persistable | None], next_session_id: Callable[[], int]
    ) -> None:
        self.store = store
        self._lookup = lookup
        store.bind(self._current, next_session_id)

    def _current(self, session_id: int) -> dict[str, Any] | None:
        held = self._lookup(session_id)
        return None if held is None else held.record()

    def _held(self, item: Persistable) -> bool:
        return self._lookup(item.id) is item

    def save(self, item: Persistable) -> Awaitable[None]:
        return self.store.save(item.record()) if self._held(item) else _nothing()

    def create(self, item: Persistable, next_session_id: int) -> Awaitable[None]:
        """A new session's first record with the id counter; the caller awaits it (a failure is a 503)."""
        return self.store.save(item.record(), next_session_id) if self._held(item) else _nothing()

    def save_many(self, items: Iterable[Persistable]) -> Awaitable[None]:
        records = [item.record() for item in items if self._held(item)]
        return self.store.save_many(records) if records else _nothing()

    def remove(self, ids: Iterable[int]) -> Awaitable[None]:
        return self.store.remove(ids)


async def _nothing() -> None:
    return None
