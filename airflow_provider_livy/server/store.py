"""The state-store interface the batch service writes through.

With recovery off nothing is persisted (NullStore). The filesystem and ZooKeeper stores
implement the same three coroutines; recovery reads them back at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class StoreUnavailable(RuntimeError):
    """The store cannot be written now (e.g. ZooKeeper lost); the API answers 503."""


class StateStore(Protocol):
    async def save(self, record: dict[str, Any], next_session_id: int | None = None) -> None:
        """Write one batch record, and the id counter with it when given, in one round trip."""

    async def remove(self, ids: Iterable[int]) -> None:
        """Forget these batches' records, in bulk."""

    def close(self) -> None:
        """Release connections; records stay."""


class NullStore:
    """Recovery off: nothing survives a restart, so nothing is written."""

    async def save(self, record: dict[str, Any], next_session_id: int | None = None) -> None:
        return None

    async def remove(self, ids: Iterable[int]) -> None:
        return None

    def close(self) -> None:
        return None
