"""The state-store interface the batch service writes through.

With recovery off nothing is persisted (NullStore). The filesystem and ZooKeeper stores
implement the same three coroutines; recovery reads them back at start-up.
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
    async def save(self, record: dict[str, Any], next_session_id: int | None = None) -> None:
        """Write one batch record, and the id counter with it when given, in one round trip."""

    def remove(self, ids: Iterable[int]) -> Awaitable[None]:
        """Forget these batches' records, in bulk. The work may start at the call (ZooKeeper's does),
        so recovery can start its purge before the event loop runs and await it once serving."""

    def close(self) -> None:
        """Release connections; records stay."""


class RecoverableStore(StateStore, Protocol):
    """A store that survives restarts (filesystem, ZooKeeper): what recovery needs besides writing."""

    def scan(self) -> Snapshot:
        """The id counter, the record ids and the index, without reading any record."""

    def read_records(self, ids: Iterable[int]) -> list[tuple[int, bytes | None, float]]:
        """(id, raw record or None if gone, modification time) for each id; blocking, bulk."""

    async def save_many(self, records: list[dict[str, Any]]) -> None:
        """Write many records in bulk (recovery's re-saves); failures are retried by the store."""

    def bind(self, lookup: RecordLookup, next_session_id: Callable[[], int]) -> None:
        """Where re-syncs read the truth from: the server's memory."""


class NullStore:
    """Recovery off: nothing survives a restart, so nothing is written."""

    async def save(self, record: dict[str, Any], next_session_id: int | None = None) -> None:
        return None

    async def remove(self, ids: Iterable[int]) -> None:
        return None

    def close(self) -> None:
        return None
