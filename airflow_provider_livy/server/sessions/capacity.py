"""What the two families share: room for sessions, creation slots, and the cluster follower.

livy.server.session.max-sessions counts batches and sessions together; at the limit the session that
finished first (of either family) is forgotten early, and when every held one is still active a new
one is refused (503, retry later). livy.server.session.max-creation bounds the drivers starting at
once, whichever family they are. Drivers handed to a cluster are followed by one Follower for both
families, so each cluster gets one poll per interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from airflow_provider_livy.protocol import Family
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers import cluster
from airflow_provider_livy.server.sessions.handover import HandOver
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.sessions.registry import Registry

log = logging.getLogger(__name__)


class ServerBusy(RuntimeError):
    """Every held session is still active; the client should retry later (503 + Retry-After)."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HasProtocol(Protocol):
    protocol: Family


class Launches(Protocol):
    launching: set[int]  # launched, driver not up yet: each holds a creation slot


class Member(Protocol):
    """What Capacity reads of each family's lifecycle."""

    family: HasProtocol
    registry: Registry
    launches: Launches
    cluster: HandOver

    def launch_pending(self) -> None: ...

    def forget(self, sessions: list[Session]) -> None: ...


class Capacity:
    """The families' shared limits; each family's lifecycle joins it when made."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.members: list[Member] = []
        self.follower = cluster.Follower(config, self._on_cluster_status)  # a driver's key: (family name, id)
        self._following: asyncio.Task[None] | None = None

    def join(self, member: Member) -> None:
        self.members.append(member)

    def follow_clusters(self) -> asyncio.Task[None] | None:
        """The follower's loop, started by the first family to start (None for the other)."""
        if self._following is not None and not self._following.done():
            return None
        self._following = asyncio.create_task(self.follower.run())
        return self._following

    def _on_cluster_status(self, key: cluster.Key, handle: cluster.Handle, status: cluster.Status | None) -> None:
        family, session_id = key  # type: ignore[misc]
        for member in self.members:
            if member.family.protocol.name == family:
                member.cluster.on_status(session_id, handle, status)

    def held(self) -> int:
        return sum(len(member.registry) for member in self.members)

    def slot_free(self) -> bool:
        return sum(len(member.launches.launching) for member in self.members) < self.config.max_creation

    def released(self) -> None:
        """A creation slot came free: whichever family waits may launch."""
        for member in self.members:
            member.launch_pending()

    def oldest_finished(self) -> Member | None:
        """The family holding the session that finished first (eviction takes it), None if none finished."""
        finished = [
            ((oldest.finished_at or oldest.created_at), i)
            for i, member in enumerate(self.members)
            if (oldest := member.registry.oldest_finished()) is not None
        ]
        return self.members[min(finished)[1]] if finished else None

    def make_room(self) -> None:
        """At max-sessions (batches and sessions together) the oldest finished go early; if all are active, refuse."""
        while (held := self.held()) >= self.config.max_sessions:
            owner = self.oldest_finished()
            victim = None if owner is None else owner.registry.evict_oldest_finished()
            if owner is None or victim is None:
                raise ServerBusy(
                    f"the server holds {held} sessions, all still active "
                    f"(livy.server.session.max-sessions = {self.config.max_sessions}); retry later"
                )
            owner.registry.counters["evicted"] += 1
            log.warning("evicted finished %s %s early to stay under max-sessions", owner.family.protocol.word, victim.id)
            owner.forget([victim])
