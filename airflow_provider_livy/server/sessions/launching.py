"""When a queued session launches: accepted sessions wait here for a creation slot, then their driver is spawned.

livy.server.session.max-creation bounds the drivers starting at once, both families together (Capacity
counts each family's `launching`). A session leaves the queue when a slot is free and this server may act
(a group's leader that cannot confirm its lead launches nothing). A slot is held from the launch until the
driver is up (or gone); the lifecycle gives it back.

In recovery mode ha a launch is told in two steps, so that across a failover it happens exactly once: the
supervisor is spawned held (it starts nothing yet), the store record is written with its pid (the launch
mark), and only once ZooKeeper took that write (the fence let it through) is the supervisor told to go.
A supervisor never told ends NOT_STARTED and its session is queued again, here or at the next leader,
which finds the pid in the mark: a live supervisor is followed (it may still be told), an ended one says
whether it started anything.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from airflow_provider_livy.protocol import DEAD, STARTING
from airflow_provider_livy.server.drivers import launcher
from airflow_provider_livy.server.drivers.local import LocalDrivers
from airflow_provider_livy.server.drivers.logs import SessionFiles
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
    files: SessionFiles  # the exit file a held supervisor leaves
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
        self.launching.add(session.id)  # the slot is taken from now on
        if self.lifecycle.config.ha:
            self.lifecycle.spawn(self._launch_marked(session))
        elif self._spawn(session, held=False):
            session.request = None
            self.lifecycle.persist(session)

    async def _launch_marked(self, session: Session) -> None:
        """Spawn held, store the mark, then say go: a server that no longer leads starts nothing (its write
        fails, or it dies and its pipe closes), and the new leader never starts it a second time."""
        lifecycle, registry = self.lifecycle, self.lifecycle.registry
        if not self._spawn(session, held=True):
            return
        try:
            await lifecycle.writer.create(session, registry.next_id)  # raises unless it reached the store
        except StoreUnavailable as err:
            word = lifecycle.family.protocol.word
            log.warning("%s %d not launched: its launch mark was not written (%s)", word, session.id, err)
            lifecycle.local.let_go(session.id)  # ends NOT_STARTED: queued again (not_started)
            return
        if registry.sessions.get(session.id) is not session or session.state != STARTING or session.kill_requested:
            lifecycle.local.let_go(session.id)  # deleted meanwhile
            return
        if lifecycle.local.go(session):
            session.request = None  # started: nothing left to launch again
            lifecycle.persist(session)

    def _spawn(self, session: Session, held: bool) -> bool:
        """Hand the driver to the local launcher; a driver that cannot even start ends its session dead."""
        lifecycle = self.lifecycle
        try:
            lifecycle.local.launch(session, *lifecycle.family.launch(session, session.request or {}), held=held)
        except OSError as err:
            session.request = None
            lifecycle.note(session, f"could not start the driver: {err}")
            lifecycle.finish(session, DEAD)
            return False
        return True

    def not_started(self, session: Session, code: int | None) -> bool:
        """A held supervisor ended without being told to start (NOT_STARTED): nothing ran, so the session waits
        for a slot again, first in line. True when that is what happened."""
        if code != launcher.NOT_STARTED or session.request is None or session.kill_requested or session.state != STARTING:
            return False
        lifecycle = self.lifecycle
        lifecycle.local.unwatch(session.id)
        if self.release(session):
            lifecycle.capacity.released()
        session.pid = session.pid_start = None
        lifecycle.files.exit_code(session.id).unlink(missing_ok=True)
        lifecycle.note(session, "its launch was not confirmed by the store, so nothing was started: it is launched again")
        lifecycle.persist(session)
        self.pending.appendleft(session.id)
        lifecycle.collector.wake()  # launched once this server may act, or by the next leader
        return True
