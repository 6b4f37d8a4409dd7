"""When a queued session launches: accepted sessions wait here for a creation slot, then their driver is spawned.

livy.server.session.max-creation bounds the drivers starting at once, both families together (Capacity
counts each family's `launching`). A session leaves the queue when a slot is free and this server may act
(a group's leader that cannot confirm its lead launches nothing). In recovery mode ha the store record says
"launched" before the driver is spawned, so a second leader never launches it again. A slot is held from
the launch until the driver is up (or gone); the lifecycle gives it back.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from airflow_provider_livy.protocol import DEAD, STARTING
from airflow_provider_livy.server.drivers.local import LocalDrivers
from airflow_provider_livy.server.sessions.capacity import Capacity
from airflow_provider_livy.server.sessions.collector import Collector
from airflow_provider_livy.server.sessions.contract import Lifecycle
from airflow_provider_livy.server.sessions.families import ServerFamily
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.stores.base import StoreUnavailable, StoreWriter

log = logging.getLogger(__name__)


class Launcher(Lifecycle, Protocol):
    """What the queue reads of its family's lifecycle."""

    family: ServerFamily
    local: LocalDrivers  # spawns the driver on this host
    writer: StoreWriter  # the launch mark, in a group
    capacity: Capacity  # the creation slots, both families together
    collector: Collector  # woken when a launch waits for the lead to be confirmed
    may_act: Callable[[], bool]  # false while a group's leader cannot confirm its lead


class LaunchQueue:
    """One family's sessions waiting for a creation slot, and those launched whose driver is not up yet."""

    def __init__(self, lifecycle: Launcher) -> None:
        self.lifecycle = lifecycle
        self.pending: deque[int] = deque()  # accepted, waiting for a creation slot
        self.launching: set[int] = set()  # launched, driver not up yet (bounded by max-creation)

    def wait(self, session: Session) -> None:
        """Queue a session for a creation slot (launch_pending launches it once one is free)."""
        self.pending.append(session.id)

    def hold(self, session: Session) -> None:
        """A re-attached driver still starting holds its creation slot."""
        self.launching.add(session.id)

    def release(self, session: Session) -> bool:
        """The driver is up or gone: its slot frees. True if it held one."""
        held = session.id in self.launching
        self.launching.discard(session.id)
        return held

    def withdraw(self, session: Session) -> bool:
        """Take a session out of the queue (it is being killed before its launch). True if it was queued."""
        if session.id not in self.pending:
            return False
        self.pending.remove(session.id)
        return True

    def launch_pending(self) -> None:
        lifecycle = self.lifecycle
        while self.pending and lifecycle.capacity.slot_free() and lifecycle.may_act():
            session = lifecycle.registry.sessions.get(self.pending.popleft())
            if session is not None and session.state == STARTING and session.request is not None:
                self._launch(session)

    def _launch(self, session: Session) -> None:
        request, session.request = session.request or {}, None
        if self.lifecycle.config.ha:
            self.launching.add(session.id)  # the slot is taken from now on
            self.lifecycle.spawn(self._launch_marked(session, request))
        else:
            self._start(session, request)

    async def _launch_marked(self, session: Session, request: dict[str, Any]) -> None:
        """In a group, the record says "launched" (no request left to launch) before the driver is spawned, and
        only a write the fence let through spawns it: a server that no longer leads launches nothing, and the
        new leader never launches it a second time (it finds the driver by its exit file, or marks it dead)."""
        registry = self.lifecycle.registry
        try:
            await self.lifecycle.writer.create(session, registry.next_id)  # raises unless it reached the store
        except StoreUnavailable as err:
            self.launching.discard(session.id)
            if registry.sessions.get(session.id) is session and session.state == STARTING:
                session.request = request
                self.pending.appendleft(session.id)  # launched when this server may write again, or by the next leader
                self.lifecycle.collector.wake()  # the collector sees the held lead and launches once it is confirmed
            word = self.lifecycle.family.protocol.word
            log.warning("%s %d not launched: its launch mark was not written (%s)", word, session.id, err)
            return
        if registry.sessions.get(session.id) is not session or session.state != STARTING:
            self.launching.discard(session.id)  # deleted meanwhile
            return
        self._start(session, request)

    def _start(self, session: Session, request: dict[str, Any]) -> None:
        """Hand the driver to the local launcher; a driver that cannot even start ends its session dead."""
        lifecycle = self.lifecycle
        try:
            lifecycle.local.launch(session, *lifecycle.family.launch(session, request))
        except OSError as err:
            lifecycle.note(session, f"could not start the driver: {err}")
            lifecycle.finish(session, DEAD)
            return
        self.launching.add(session.id)
        lifecycle.persist(session)
