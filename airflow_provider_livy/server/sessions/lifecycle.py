"""The life of a session, batch or interactive: accepted, queued for a creation slot, launched,
watched, ended, forgotten.

One SessionService per family (batches; interactive sessions), each with its own registry, ids,
store records and log directory, as in Livy; both share one Capacity (capacity.py). The service
decides and records; the launch queue (launching.py) says when a queued session launches, the
family (families.py) where batches and sessions differ, the local drivers (drivers/local.py) watch
processes on this host and read their output, the hand-over (handover.py) follows drivers in a cluster.

Everything here runs on the server's event loop, so the registry needs no locks. Two background
tasks drive it: the monitor (reads new driver output, notices exits) and the collector (sleeps
until the next deadline, then forgets expired sessions and ends overdue ones).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from airflow_provider_livy.protocol import (
    BATCHES,
    BUSY,
    DEAD,
    IDLE,
    KILLED,
    RUNNING,
    SESSIONS,
    STARTING,
    SUCCESS,
    Family,
    RequestError,
)
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers import cluster, launcher, logs
from airflow_provider_livy.server.drivers.local import LocalDrivers, Watchers, read_facts
from airflow_provider_livy.server.sessions.capacity import Capacity
from airflow_provider_livy.server.sessions.collector import Collector
from airflow_provider_livy.server.sessions.families import SERVER_FAMILIES, ServerFamily
from airflow_provider_livy.server.sessions.handover import HandOver
from airflow_provider_livy.server.sessions.launching import LaunchQueue
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.sessions.registry import Registry
from airflow_provider_livy.server.sessions.views import Views
from airflow_provider_livy.server.stores.base import NullStore, StateStore, StoreWriter

log = logging.getLogger(__name__)

UP_STATES = frozenset({IDLE, BUSY})


class SessionService:
    """Owns one family's registry, its drivers and its store writes."""

    def __init__(
        self,
        config: ServerConfig,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        family: Family = BATCHES,
        capacity: Capacity | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.ui_host = config.host if config.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        self.tracker = cluster.tracker_for_config(config)  # deploy mode cluster: where new drivers go
        self.family: ServerFamily = SERVER_FAMILIES[family.name](self)  # where batches and sessions differ
        self.registry = Registry(config.state_retain, self.family.live_deadline, clock, family.states)
        self.store: StateStore = store or NullStore()
        self.writer = StoreWriter(self.store, self.registry.get, lambda: self.registry.next_id)
        self.capacity = capacity or Capacity(config)
        self.capacity.join(self)
        self.follower = self.capacity.follower  # drivers handed over to a cluster, of both families
        self.files = logs.SessionFiles(logs.default_log_dir(config) / self.family.log_subdir)
        self.files.directory.mkdir(parents=True, exist_ok=True)
        watchers = Watchers(output=self._on_output, exit=self._on_exit, app_id=self.persist)
        self.local = LocalDrivers(config, self.files, self.tracker, clock, watchers)
        self.cluster = HandOver(self, self.follower, self.family, self.files, self.local.read_output)
        self.collector = Collector(
            self.registry, clock, self.forget, self.family.overdue, may_act=self._may_act_now, resume=self.launch_pending
        )
        self.launches = LaunchQueue(self)  # when a queued session launches
        self.views = Views(self.family, self.registry, self.files)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.after_start: list[Callable[[], Coroutine[Any, Any, None]]] = []  # e.g. recovery's purge, run once serving
        # A group's leader (recovery mode ha) sets this to its fence: false while it cannot confirm its lead, and
        # then the clocks and launches wait.
        self.may_act: Callable[[], bool] = lambda: True

    def _may_act_now(self) -> bool:
        """`may_act` as it is set now (a group's leader sets it once made): the collector asks this."""
        return self.may_act()

    # --- running --------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(t) for t in (self.local.monitor(), self.collector.run())]
        if (following := self.capacity.follow_clusters()) is not None:
            self._tasks.append(following)
        for session in list(self.registry.sessions.values()):
            self._resume(session)
        self.launch_pending()
        for job in self.after_start:
            self.spawn(job())

    def adopt(self, session: Session) -> None:
        """Register a session recovered from the store; once serving, resume it at once."""
        self.registry.add(session)
        if self._tasks:
            self._resume(session)
            self.launch_pending()

    def _resume(self, session: Session) -> None:
        """A queued session waits for a creation slot; a re-attached live driver is watched (and holds its
        slot); a driver handed over to a cluster is followed there."""
        if session.active and session.cluster is not None and session.cluster_id is not None and session.pid is None:
            self.cluster.follow(session)
            self.family.resume(session)
        elif session.state == STARTING and session.pid is None:
            self.launches.wait(session)
        elif session.active and session.pid is not None and session.id not in self.local:
            if session.state == STARTING:
                self.launches.hold(session)
            self.local.watch(session)
            self.family.resume(session)

    async def stop(self) -> None:
        """Graceful shutdown: with recovery on, drivers keep running for the next server; else they die."""
        for task in self._tasks:
            task.cancel()
        if not self.config.recovery:
            followed = [s for s in self.registry.sessions.values() if self.cluster.follows(s)]
            await asyncio.gather(*(self._kill(s) for s in [*self.local.watched.values(), *followed]))
        await self.family.close()
        self.local.close()
        self.store.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def persist(self, session: Session) -> None:
        """Sent now, in the order decided (see StoreWriter); only the answer is awaited in the background."""
        self.spawn(self._settle(self.writer.save(session), session.id))

    async def _settle(self, sent: Awaitable[None], session_id: int) -> None:
        try:
            await sent
        except Exception:  # the store logs and re-syncs after reconnecting
            log.exception("could not persist %s %s", self.family.protocol.word, session_id)

    def note(self, session: Session, line: str) -> None:
        """A line from the server itself in the session's log, so the user sees why; and in the server's log.
        A full or read-only log disk must not stop the session from reaching its end state."""
        logs.note(self.files.log(session.id), self.family.protocol.word, session.id, line)

    # --- API operations ------------------------------------------------------------------
    async def submit(self, body: Any, owner: str | None) -> Session:
        now = self.clock()
        request, repl = await self.family.accept(body, now)
        request = launcher.check_request_files(request, self.config.local_dir_whitelist, self.config.cluster_mode)
        name = request.get("name")
        if name and name in self.registry.names:
            raise RequestError(f"Duplicate session name: {name}")
        self.capacity.make_room()
        session_id = self.registry.new_id()
        session = Session(
            id=session_id,
            name=name,
            owner=owner,
            proxy_user=request.get("proxyUser"),
            state=STARTING,
            created_at=now,
            app_tag=f"livy-{self.family.protocol.word}-{session_id}-{secrets.token_hex(4)}",
            tail=self.family.new_tail(),
            request=request,
            repl=repl,
        )
        self.registry.add(session)
        try:
            await self.writer.create(session, self.registry.next_id)
        except Exception:
            self.registry.remove(session.id)
            raise
        self.registry.counters["created"] += 1
        self.collector.wake()  # a new live deadline (ttl, idle)
        self.launches.wait(session)
        self.launch_pending()
        return session

    async def delete(self, session: Session) -> None:
        """Kill a running driver first, then forget the session."""
        if session.active:
            await self._kill(session)
        self.follower.unfollow(self.cluster.key(session.id))  # a kill the cluster did not confirm in time
        if self.registry.remove(session.id) is not None:
            self.registry.counters["deleted"] += 1
        removal = self.writer.remove([session.id])
        self.files.remove([session.id])
        await removal

    def forget(self, sessions: list[Session]) -> None:
        """The removal is sent now; waiting for it, then the log files, happen in the background:
        40,000 expiring at once must not stall the event loop."""
        ids = [s.id for s in sessions]
        self.spawn(self._remove_files(self.writer.remove(ids), ids))

    async def _remove_files(self, removal: Awaitable[None], ids: list[int]) -> None:
        try:
            await removal
        except Exception:
            log.exception("could not remove %d records from the store", len(ids))
        await asyncio.to_thread(self.files.remove, ids)

    def launch_pending(self) -> None:
        """Launch what waits, as far as creation slots allow (launching.py says when)."""
        self.launches.launch_pending()

    # --- what the driver says ------------------------------------------------------------------
    def _on_output(self, session: Session, lines: list[str]) -> None:
        session.log_lines += len(lines)
        if session.tail is not None:
            session.tail.extend(lines)
        submitted_id = None if session.cluster is None else self.follower.tracker(session.cluster).submitted_id
        facts = read_facts(session, lines, self.ui_host, submitted_id)
        if session.state == STARTING and self.family.up_on_driver_start and (facts.started or session.app_id):
            self.mark_up(session, RUNNING)
        elif facts.changed:
            self.persist(session)

    def mark_up(self, session: Session, state: str) -> None:
        """The driver is up (a batch running; a session idle or busy): its creation slot frees. A session
        going between idle and busy is not written: a restart asks its driver, which knows."""
        moved_between_up_states = session.state in UP_STATES and state in UP_STATES
        session.request = None  # a driver followed from its held start (a failover) is up: nothing to launch again
        self.registry.set_state(session, state)
        if self.launches.release(session):
            self.capacity.released()
        if not moved_between_up_states:
            self.persist(session)
        self.rearm(session)

    def _on_exit(self, session: Session) -> None:
        if session.cluster is not None:
            self.files.properties(session.id).unlink(missing_ok=True)
        code = launcher.read_exit_code(self.files.exit_code(session.id))
        if self.launches.not_started(session, code):
            return
        if session.cluster is not None and self.cluster.submitted(session, code):
            self.launches.release(session)  # spark-submit is gone: its creation slot is free
            self.capacity.released()
            return
        if session.kill_requested:
            state = KILLED
        elif code == 0 and self.family.can_succeed:
            state = SUCCESS
        else:
            state = DEAD  # an interactive session never succeeds: its driver ending on its own is its death
            if code is None:
                self.note(session, "the driver ended without reporting an exit code")
            elif not self.family.can_succeed:
                self.note(session, f"the session's driver exited on its own with code {code}")
        if session.id in self.registry.sessions:
            self.finish(session, state)

    def finish(self, session: Session, state: str) -> None:
        self.launches.release(session)
        self.local.unwatch(session.id)
        self.family.finished(session)
        self.registry.set_state(session, state)
        self.persist(session)
        self.collector.wake()
        self.capacity.released()

    async def _kill(self, session: Session) -> None:
        """Ask the driver to stop, then SIGTERM its process group, SIGKILL after a grace; returns once it is gone."""
        session.kill_requested = True
        if self.cluster.follows(session):
            await self.family.stop_driver(session, in_cluster=True)
            await self.cluster.kill(session)
            return
        if self.launches.withdraw(session) or session.pid is None:
            if session.active:
                self.finish(session, KILLED)
            return
        if grace := await self.family.stop_driver(session, in_cluster=False):
            await self.local.wait_gone(session, grace)  # Spark stops cleanly; the group is killed if it takes too long
        await self.local.kill(session)
        if self.cluster.follows(session):  # spark-submit had handed the driver over already
            await self.cluster.kill(session)
        elif session.active:
            self.finish(session, KILLED)

    def end(self, session: Session, line: str) -> None:
        """End an active session for a reason the server has (a clock ran out), with a line in its log saying so."""
        self.note(session, line)
        self.spawn(self._kill(session))

    def rearm(self, session: Session) -> None:
        """A live deadline may have moved earlier (a session went idle): the collector must know."""
        self.collector.rearm(session)


def family_services(config: ServerConfig, stores: list[StateStore] | None = None) -> tuple[SessionService, SessionService]:
    """The batch and interactive services, sharing one Capacity, each with its store (none: nothing kept)."""
    batch_store, session_store = stores or (None, None)
    batches = SessionService(config, batch_store, family=BATCHES)
    return batches, SessionService(config, session_store, family=SESSIONS, capacity=batches.capacity)
