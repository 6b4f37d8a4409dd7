"""The life of a session, batch or interactive: accepted, queued for a creation slot, launched,
watched, ended, forgotten.

One SessionService per family (batches; interactive sessions), each with its own registry, ids,
store records and log directory, as in Livy; both share one Capacity (max-sessions held,
max-creation drivers starting). What only interactive sessions do (the REPL channel, statements,
the idle/ttl/heartbeat clocks) is in interactive.py, called from the few places that differ.

Everything here runs on the server's event loop, so the registry needs no locks. Two background
tasks drive it: the monitor (reads new driver output, notices exits) and the collector (sleeps
until the next deadline, then forgets expired sessions and ends overdue ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import time
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from airflow_provider_livy.protocol import (
    BATCH_STATES,
    BUSY,
    DEAD,
    IDLE,
    KILLED,
    RUNNING,
    SESSION_STATES,
    SHUTTING_DOWN,
    STARTING,
    SUCCESS,
    TERMINAL_STATES,
    BatchRequestError,
    validate_batch_request,
    validate_session_request,
)
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers import cluster, launcher, logs
from airflow_provider_livy.server.drivers.exits import ExitWatch
from airflow_provider_livy.server.sessions.interactive import SHUTDOWN_WAIT, Interactive
from airflow_provider_livy.server.sessions.registry import Batch, Registry
from airflow_provider_livy.server.stores.base import NullStore, StateStore, StoreWriter

log = logging.getLogger(__name__)

MONITOR_INTERVAL = 0.2  # seconds between reads of active batches' driver output
KILL_GRACE = 3.0  # SIGTERM, then SIGKILL after this long
CLUSTER_KILL_CONFIRM = 30.0  # how long a DELETE waits for the cluster to confirm a kill
VIEW_LOG_LINES = 10
UP_STATES = frozenset({IDLE, BUSY})
BATCH, INTERACTIVE = "batch", "interactive"  # the families; also their store directories (v1/batch, v1/interactive)


class ServerBusy(RuntimeError):
    """Every held session is still active; the client should retry later (503 + Retry-After)."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Capacity:
    """What both families share: max-sessions counts batches and sessions together, and
    max-creation bounds the drivers starting at once, whichever kind they are. Drivers handed to a
    cluster are followed by one Follower for both, so each cluster gets one poll per interval."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.services: list[SessionService] = []
        self.follower = cluster.Follower(config, self._on_cluster_status)  # a session's key: (INTERACTIVE, id)
        self._following: asyncio.Task[None] | None = None

    def follow_clusters(self) -> asyncio.Task[None] | None:
        """The follower's loop, started by the first family to start (None for the other)."""
        if self._following is not None and not self._following.done():
            return None
        self._following = asyncio.create_task(self.follower.run())
        return self._following

    def _on_cluster_status(self, key: cluster.Key, handle: cluster.Handle, status: cluster.Status | None) -> None:
        family, batch_id = key if isinstance(key, tuple) else (BATCH, key)
        for service in self.services:
            if service.family == family:
                service._on_cluster_status(batch_id, handle, status)

    def held(self) -> int:
        return sum(len(service.registry) for service in self.services)

    def slot_free(self) -> bool:
        return sum(len(service.launching) for service in self.services) < self.config.max_creation

    def released(self) -> None:
        """A creation slot came free: whichever family waits may launch."""
        for service in self.services:
            service.launch_pending()

    def oldest_finished(self) -> SessionService | None:
        """The family holding the session that finished first (eviction takes it), None if none finished."""
        finished = [
            ((oldest.finished_at or oldest.created_at), i)
            for i, service in enumerate(self.services)
            if (oldest := service.registry.oldest_finished()) is not None
        ]
        return self.services[min(finished)[1]] if finished else None


class SessionService:
    """Owns one family's registry, its driver processes and its store writes."""

    def __init__(
        self,
        config: ServerConfig,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        family: str = BATCH,
        capacity: Capacity | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.family = family
        self.word = "session" if family == INTERACTIVE else "batch"  # in the server log's lines
        self.interactive = Interactive(self) if family == INTERACTIVE else None
        self.registry = Registry(
            config.state_retain, self._live_deadline, clock, SESSION_STATES if self.interactive else BATCH_STATES
        )
        self.store: StateStore = store or NullStore()
        self.writer = StoreWriter(self.store, self.registry.get, lambda: self.registry.next_id)
        self.capacity = capacity or Capacity(config)
        self.capacity.services.append(self)
        self.spark_home = launcher.resolve_spark_home(config)
        log_dir = logs.default_log_dir(config)
        self.log_dir = log_dir / INTERACTIVE if self.interactive else log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ui_host = config.host if config.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        self.pending: deque[int] = deque()  # accepted, waiting for a creation slot
        self.launching: set[int] = set()  # launched, driver not up yet (bounded by max-creation)
        self.watched: dict[int, Batch] = {}  # batches with a live process
        self.exits: ExitWatch | None = None  # tells the moment a watched driver exits (made on first use)
        self.tracker = cluster.tracker_for_config(config)  # deploy mode cluster: where new drivers go
        self.follower = self.capacity.follower  # drivers handed over to a cluster, of both families
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self.after_start: list[Callable[[], Coroutine[Any, Any, None]]] = []  # e.g. recovery's purge, run once serving

    # --- paths -------------------------------------------------------------------------
    def log_path(self, batch_id: int) -> Path:
        return self.log_dir / f"{batch_id}.log"

    def exit_path(self, batch_id: int) -> Path:
        return self.log_dir / f"{batch_id}.exit"

    def properties_path(self, batch_id: int) -> Path:
        """A cluster-mode session's --properties-file (0600, it holds the channel's secret): it lives only
        while spark-submit runs, which reads it at its start; a restart needs none (the record has all)."""
        return self.log_dir / f"{batch_id}.properties"

    def spark_submit_problem(self) -> str | None:
        """A reason spark-submit cannot run, for a warning at start-up; None when it looks fine."""
        path = self.spark_home / "bin" / "spark-submit"
        if not path.is_file():
            return f"spark-submit not found at {path} (set livy.server.spark-home or SPARK_HOME)"
        if not os.access(path, os.X_OK):
            return f"{path} is not executable"
        return None

    # --- running --------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [asyncio.create_task(t) for t in (self._monitor(), self._collect())]
        if (following := self.capacity.follow_clusters()) is not None:
            self._tasks.append(following)
        for batch in list(self.registry.batches.values()):
            self._follow(batch)
        self.launch_pending()
        for job in self.after_start:
            self._spawn(job())

    def adopt(self, batch: Batch) -> None:
        """Register a batch recovered from the store; once serving, follow it at once."""
        self.registry.add(batch)
        if self._tasks:
            self._follow(batch)
            self.launch_pending()

    def _follow(self, batch: Batch) -> None:
        """A queued batch waits for a creation slot; a re-attached live driver is watched (and holds its slot);
        a driver handed over to a cluster is followed there."""
        if batch.active and batch.cluster is not None and batch.cluster_id is not None and batch.pid is None:
            self._follow_in_cluster(batch)
            if self.interactive:  # a session's REPL in the cluster, through the address it called back with
                self.interactive.follow(batch)
        elif batch.state == STARTING and batch.pid is None:
            self.pending.append(batch.id)
        elif batch.active and batch.pid is not None and batch.id not in self.watched:
            if batch.state == STARTING:
                self.launching.add(batch.id)
            self._watch(batch)
            if self.interactive:
                self.interactive.follow(batch)

    async def stop(self) -> None:
        """Graceful shutdown: with recovery on, drivers keep running for the next server; else they die."""
        for task in self._tasks:
            task.cancel()
        if not self.config.recovery:
            followed = [b for b in self.registry.batches.values() if self.follower.follows(self._key(b.id))]
            await asyncio.gather(*(self._kill(b) for b in [*self.watched.values(), *followed]))
        if self.interactive:
            await self.interactive.stop()
        if self.exits is not None:
            self.exits.close()
        self.store.close()

    def _key(self, batch_id: int) -> cluster.Key:
        """What the shared follower knows a driver by: a batch's id; a session's (INTERACTIVE, id)."""
        return (INTERACTIVE, batch_id) if self.interactive else batch_id

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _persist(self, batch: Batch) -> None:
        """Sent now, in the order decided (see StoreWriter); only the answer is awaited in the background."""
        self._spawn(self._settle(self.writer.save(batch), batch.id))

    async def _settle(self, sent: Awaitable[None], batch_id: int) -> None:
        try:
            await sent
        except Exception:  # the store logs and re-syncs after reconnecting
            log.exception("could not persist batch %s", batch_id)

    # --- API operations ------------------------------------------------------------------
    async def submit(self, body: Any, owner: str | None) -> Batch:
        now = self.clock()
        if self.interactive:
            request = validate_session_request(body)
            repl = await self.interactive.prepare(request, now)
            await self.interactive.warm()
        else:
            request, repl = validate_batch_request(body), None
        request = launcher.check_request_files(request, self.config.local_dir_whitelist, self.config.cluster_mode)
        name = request.get("name")
        if name and name in self.registry.names:
            raise BatchRequestError(f"Duplicate session name: {name}")
        self._make_room()
        batch_id = self.registry.new_id()
        batch = Batch(
            id=batch_id,
            name=name,
            owner=owner,
            proxy_user=request.get("proxyUser"),
            state=STARTING,
            created_at=now,
            app_tag=f"livy-{'session' if repl else 'batch'}-{batch_id}-{secrets.token_hex(4)}",
            # An idle session's view reads its last lines from disk: memory per session stays small.
            tail=None if repl else deque(maxlen=self.config.cache_log_size),
            request=request,
            repl=repl,
        )
        self.registry.add(batch)
        try:
            await self.writer.create(batch, self.registry.next_id)
        except Exception:
            self.registry.remove(batch.id)
            raise
        self.registry.counters["created"] += 1
        self._wake.set()  # a new live deadline (ttl, idle) for the collector
        self.pending.append(batch.id)
        self.launch_pending()
        return batch

    async def delete(self, batch: Batch) -> None:
        """Kill a running driver first, then forget the batch."""
        if batch.active:
            await self._kill(batch)
        self.follower.unfollow(self._key(batch.id))  # a kill the cluster did not confirm in time
        if self.registry.remove(batch.id) is not None:
            self.registry.counters["deleted"] += 1
        removal = self.writer.remove([batch.id])
        logs.remove(self.log_path(batch.id), self.exit_path(batch.id), self.properties_path(batch.id))
        await removal

    def _make_room(self) -> None:
        """At max-sessions (batches and sessions together) the oldest finished go early; if all are active, refuse."""
        while (held := self.capacity.held()) >= self.config.max_sessions:
            owner = self.capacity.oldest_finished()
            victim = None if owner is None else owner.registry.evict_oldest_finished()
            if owner is None or victim is None:
                raise ServerBusy(
                    f"the server holds {held} sessions, all still active "
                    f"(livy.server.session.max-sessions = {self.config.max_sessions}); retry later"
                )
            owner.registry.counters["evicted"] += 1
            log.warning("evicted finished %s %s early to stay under max-sessions", owner.family, victim.id)
            owner._forget([victim])

    def _forget(self, batches: list[Batch]) -> None:
        """The removal is sent now; waiting for it, then the log files, happen in the background:
        40,000 expiring at once must not stall the event loop."""
        ids = [b.id for b in batches]
        self._spawn(self._remove_files(self.writer.remove(ids), ids))

    async def _remove_files(self, removal: Awaitable[None], ids: list[int]) -> None:
        try:
            await removal
        except Exception:
            log.exception("could not remove %d records from the store", len(ids))
        await asyncio.to_thread(self._remove_logs, ids)

    def _remove_logs(self, ids: list[int]) -> None:
        """Plain os calls: 80,000 of them through pathlib cost seconds of CPU."""
        directory = str(self.log_dir)
        for batch_id in ids:
            for suffix in (".log", ".exit"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{directory}/{batch_id}{suffix}")

    # --- launching -------------------------------------------------------------------------
    def launch_pending(self) -> None:
        while self.pending and self.capacity.slot_free():
            batch = self.registry.batches.get(self.pending.popleft())
            if batch is not None and batch.state == STARTING and batch.request is not None:
                self._launch(batch)

    def _launch(self, batch: Batch) -> None:
        request, batch.request = batch.request or {}, None
        env = launcher.spark_environment(request, cluster=self.tracker is not None)
        properties, driver_settings = None, {}
        if self.interactive:
            request = self.interactive.launch_request(batch, request)
            channel = self.interactive.channel_settings(batch)
            if self.tracker is None:
                env.update(channel)
            else:  # the driver runs in the cluster: its environment goes there as Spark settings, in a 0600 file
                properties = self.properties_path(batch.id)
                driver_settings = {self.tracker.driver_env + key: value for key, value in channel.items()}
        server_conf = self.tracker.submit_conf(batch.app_tag) if self.tracker else None
        command = launcher.build_command(self.spark_home, request, self.config, server_conf, properties)
        if self.tracker is not None:
            batch.cluster = self.tracker.coordinates
        log_path = self.log_path(batch.id)
        try:
            env.update(launcher.kerberos_environment(self.config, request.get("proxyUser"), self.log_dir))
            if properties is not None:
                launcher.write_properties_file(properties, self.spark_home, env, driver_settings)
            pid = launcher.start(command, log_path, self.exit_path(batch.id), env)
        except OSError as err:
            if properties is not None:
                properties.unlink(missing_ok=True)
            self._append_log(batch, f"livy-server: could not start the driver: {err}")
            self._finish(batch, DEAD)
            return
        batch.pid, batch.child = pid, True
        batch.pid_start = launcher.process_start_time(pid)
        self.launching.add(batch.id)
        self._watch(batch)
        self._persist(batch)

    def _append_log(self, batch: Batch, line: str) -> None:
        """A line from the server itself, in the batch's log, so the user sees why. A full or
        read-only log disk must not stop the batch from reaching its end state: then the server log has it."""
        try:
            with open(self.log_path(batch.id), "a") as handle:
                handle.write(line + "\n")
        except OSError as err:
            log.warning("%s %s: %s (could not write it to its log: %s)", self.word, batch.id, line, err)
            return
        log.info("%s %s: %s", self.word, batch.id, line)

    # --- watching ------------------------------------------------------------------------
    def _watch(self, batch: Batch) -> None:
        """Follow a live driver; a pidfd tells us the moment it exits (Linux), the monitor polls too."""
        self.watched[batch.id] = batch
        if batch.pid is None or not ExitWatch.available():
            return
        if self.exits is None:
            self.exits = ExitWatch(asyncio.get_running_loop(), self._exited)
        self.exits.add(batch.pid, batch.id)

    def _exited(self, batch_id: int) -> None:
        if (batch := self.watched.get(batch_id)) is not None:
            self._check(batch)

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            for batch in list(self.watched.values()):
                try:
                    self._check(batch)
                except Exception:
                    log.exception("monitoring batch %s failed", batch.id)

    def _check(self, batch: Batch) -> None:
        """Read new driver output and notice an exit."""
        if batch.id not in self.watched:
            return
        self._read_output(batch)
        if self._reaped(batch) if batch.child else not launcher.is_alive(batch.pid or -1, batch.pid_start):
            self._read_output(batch)
            self._on_exit(batch)
        elif batch.state == RUNNING and batch.app_id is None and batch.ui_url and self.clock() >= batch.ui_probe_at:
            batch.ui_probe_at = self.clock() + 1.0
            self._spawn(self._probe_app_id(batch))

    def _read_output(self, batch: Batch) -> None:
        lines, batch.log_offset = logs.read_new(self.log_path(batch.id), batch.log_offset)
        if not lines:
            return
        batch.log_lines += len(lines)
        if batch.tail is not None:
            batch.tail.extend(lines)
        changed = False
        for line in lines:
            if batch.cluster is not None:  # spark-submit's output: it names the driver, which runs elsewhere
                if batch.cluster_id is None and (found := self.follower.tracker(batch.cluster).submitted_id(line)):
                    batch.cluster_id, changed = found, True
                continue
            if batch.app_id is None and (match := launcher.APP_ID_RE.search(line)):
                batch.app_id, changed = match.group(1), True
            if batch.ui_url is None:
                if match := launcher.UI_URL_RE.search(line):
                    batch.ui_url, changed = match.group(1), True
                elif match := launcher.UI_PORT_RE.search(line):
                    batch.ui_url, changed = f"http://{self.ui_host}:{match.group(1)}", True
            if batch.state == STARTING and batch.repl is None and launcher.DRIVER_STARTED_RE.search(line):
                self.set_up(batch, RUNNING)
                changed = False  # set_up persisted already
        if batch.state == STARTING and batch.app_id and batch.repl is None:
            self.set_up(batch, RUNNING)
        elif changed:
            self._persist(batch)

    async def _probe_app_id(self, batch: Batch) -> None:
        """Spark 4 in local mode never prints its application id; its UI's REST API knows it."""
        url = f"{batch.ui_url}/api/v1/applications"
        try:
            body = await asyncio.to_thread(_http_get_json, url)
        except (OSError, ValueError):
            return
        found = isinstance(body, list) and body and isinstance(body[0], dict) and body[0].get("id")
        if found and batch.app_id is None:
            batch.app_id = str(body[0]["id"])
            self._persist(batch)

    def set_up(self, batch: Batch, state: str) -> None:
        """The driver is up (a batch running; a session idle or busy): its creation slot frees. A session
        going between idle and busy is not written: a restart asks its driver, which knows."""
        moved_between_up_states = batch.state in UP_STATES and state in UP_STATES
        self.registry.set_state(batch, state)
        if batch.id in self.launching:
            self.launching.discard(batch.id)
            self.capacity.released()
        if not moved_between_up_states:
            self._persist(batch)
        self.rearm(batch)

    def _on_exit(self, batch: Batch) -> None:
        self.watched.pop(batch.id, None)
        if self.interactive and batch.cluster is not None:
            self.properties_path(batch.id).unlink(missing_ok=True)
        code = launcher.read_exit_code(self.exit_path(batch.id))
        if batch.cluster is not None and self._hand_over(batch, code):
            return
        if batch.kill_requested:
            state = KILLED
        elif code == 0 and batch.repl is None:
            state = SUCCESS
        else:
            state = DEAD  # an interactive session never succeeds: its driver ending on its own is its death
            if code is None:
                self._append_log(batch, "livy-server: the driver ended without reporting an exit code")
            elif batch.repl is not None:
                self._append_log(batch, f"livy-server: the session's driver exited on its own with code {code}")
        if batch.id in self.registry.batches:
            self._finish(batch, state)

    # --- drivers in a cluster ----------------------------------------------------------------
    def _hand_over(self, batch: Batch, code: int | None) -> bool:
        """spark-submit exited; if it handed the driver to the cluster, follow it there. False: it never got there."""
        tracker = self.follower.tracker(batch.cluster or {})
        if batch.cluster_id is None and tracker.finds_by_tag and (code == 0 or batch.kill_requested):
            batch.cluster_id = batch.app_tag  # killed mid-submission, the app may be in the cluster: kill it there too
        if batch.cluster_id is None or (code != 0 and not batch.kill_requested):
            if code != 0 or batch.kill_requested:
                return False  # the submission failed or was killed: it ends as a local driver does
            self._append_log(batch, "livy-server: spark-submit exited without naming the driver it submitted: marked dead")
            self._finish(batch, DEAD)
            return True
        batch.pid = batch.pid_start = None
        self.launching.discard(batch.id)  # spark-submit is gone: its creation slot is free
        self._append_log(
            batch, f"livy-server: spark-submit handed the driver to the cluster as {batch.cluster_id}; following it there"
        )
        self._follow_in_cluster(batch)
        self._persist(batch)
        self.capacity.released()
        return True

    def _follow_in_cluster(self, batch: Batch) -> None:
        """No tail in memory: the log grows only at the end (the driver's output), read from disk when viewed."""
        self.watched.pop(batch.id, None)
        batch.tail = None
        batch.cluster = self.follower.shared(batch.cluster or {})
        handle = cluster.Handle(batch.app_tag, batch.cluster_id or batch.app_tag, batch.created_at, app_id=batch.app_id)
        self.follower.follow(self._key(batch.id), batch.cluster or {}, handle)

    def _on_cluster_status(self, batch_id: int, handle: cluster.Handle, status: cluster.Status | None) -> None:
        """What one poll of the cluster says about one driver, in the batch's terms."""
        batch = self.registry.batches.get(batch_id)
        if batch is None or not batch.active:
            return
        if status is None:
            if not batch.kill_requested:  # a deleted pod is gone from the listing: that confirms the kill
                self._append_log(batch, f"livy-server: the cluster no longer knows driver {handle.cluster_id}: marked dead")
            self._finish(batch, KILLED if batch.kill_requested else DEAD)
            return
        changed = bool(status.app_id) and batch.app_id != status.app_id  # the URLs come again with every poll
        for name in ("app_id", "ui_url", "driver_log_url"):
            if value := getattr(status, name):
                setattr(batch, name, value)
        if status.state in TERMINAL_STATES:
            self._spawn(self._cluster_end(batch, handle, status))
        elif status.state == RUNNING and batch.state != RUNNING and batch.repl is None:
            self.set_up(batch, RUNNING)  # a session is up only once its REPL calls back
        elif changed:
            self._persist(batch)

    async def _cluster_end(self, batch: Batch, handle: cluster.Handle, status: cluster.Status) -> None:
        """The driver ended in the cluster: its output where the cluster serves it, or where it lives, then the end."""
        tracker = self.follower.tracker(batch.cluster or {})
        try:
            lines = await asyncio.to_thread(tracker.driver_output, handle, status)
        except Exception as err:  # the worker went away with the driver's output: the end still counts
            lines = [f"livy-server: could not read the driver's output: {err}"]
        lines.append(
            f"livy-server: driver {handle.cluster_id} ended in the cluster: {status.detail}; {tracker.log_hint(handle, status)}"
        )
        if batch.id not in self.registry.batches or not batch.active:
            return
        await asyncio.to_thread(self._append_lines, batch, lines)
        self._read_output(batch)
        if batch.app_id is None:  # standalone: the driver names its app in its output
            batch.app_id = next((m.group(1) for line in lines if (m := launcher.APP_ID_RE.search(line))), handle.cluster_id)
        end = DEAD if batch.repl is not None and status.state == SUCCESS else status.state  # a session never succeeds
        self._finish(batch, KILLED if batch.kill_requested else end)

    def _append_lines(self, batch: Batch, lines: list[str]) -> None:
        try:
            with open(self.log_path(batch.id), "a") as handle:
                handle.writelines(line + "\n" for line in lines)
        except OSError as err:
            log.warning("batch %s: could not write the driver's output to the batch log: %s", batch.id, err)

    async def _kill_in_cluster(self, batch: Batch) -> None:
        """Ask the cluster to kill the driver, then poll until it confirms (the follower ends the batch)."""
        found = self.follower.handle(self._key(batch.id))
        if found is None:
            return
        tracker, handle = found
        try:
            await asyncio.to_thread(tracker.kill, handle)
        except Exception as err:
            self._append_log(batch, f"livy-server: asking the cluster to kill driver {handle.cluster_id} failed: {err}")
        deadline = time.monotonic() + CLUSTER_KILL_CONFIRM
        while batch.active and time.monotonic() < deadline:
            await self.follower.poll_for(self._key(batch.id))
            await asyncio.sleep(0.25)
        if batch.active:
            self._append_log(
                batch,
                f"livy-server: the cluster has not confirmed the kill of driver {handle.cluster_id} "
                f"within {CLUSTER_KILL_CONFIRM:g}s",
            )

    def _finish(self, batch: Batch, state: str) -> None:
        self.launching.discard(batch.id)
        self.watched.pop(batch.id, None)
        if self.interactive:
            self.interactive.cancel_follower(batch)
        self.registry.set_state(batch, state)
        self._persist(batch)
        self._wake.set()
        self.capacity.released()

    async def _kill(self, batch: Batch) -> None:
        """SIGTERM to the driver's process group, SIGKILL after a grace period; waits until it is gone."""
        batch.kill_requested = True
        if self.follower.follows(self._key(batch.id)):
            if self.interactive and batch.repl is not None and batch.repl.address:
                self.registry.set_state(batch, SHUTTING_DOWN)  # the REPL stops Spark first; the cluster's kill then
                await self.interactive.shutdown(batch, wait=SHUTDOWN_WAIT)  # makes sure nothing is left running
            await self._kill_in_cluster(batch)
            return
        if batch.id in self.pending or batch.pid is None:
            with contextlib.suppress(ValueError):
                self.pending.remove(batch.id)
            if batch.state not in TERMINAL_STATES:
                self._finish(batch, KILLED)
            return
        pgid = batch.pid
        if self.interactive and batch.repl is not None and batch.repl.address:
            self.registry.set_state(batch, SHUTTING_DOWN)
            await self.interactive.shutdown(batch)  # Spark stops cleanly; the group is killed if it takes too long
            deadline = time.monotonic() + SHUTDOWN_WAIT
            while self._group_running(batch) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        launcher.signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE
        while self._group_running(batch) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._group_running(batch):
            launcher.signal_group(pgid, signal.SIGKILL)
            while self._group_running(batch):
                await asyncio.sleep(0.05)
        if batch.id in self.watched:
            self._check(batch)
        if self.follower.follows(self._key(batch.id)):  # spark-submit had handed the driver over already
            await self._kill_in_cluster(batch)
        elif batch.state not in TERMINAL_STATES:
            self._finish(batch, KILLED)

    @staticmethod
    def _reaped(batch: Batch) -> bool:
        """Whether our child supervisor has ended; once reaped it is no longer our child to wait for."""
        batch.child = not launcher.reap(batch.pid or -1)
        return not batch.child

    def _group_running(self, batch: Batch) -> bool:
        if batch.child:  # reap the supervisor, else its zombie keeps the group "alive"
            self._reaped(batch)
        return launcher.group_alive(batch.pid or -1)

    # --- the clock -----------------------------------------------------------------------
    async def _collect(self) -> None:
        while True:
            deadline = self.registry.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                await self._collect_due()
            except Exception:
                log.exception("collector round failed")

    async def _collect_due(self) -> None:
        now = self.clock()
        expired = list(self.registry.pop_expired(now))
        if expired:
            self.registry.counters["collected"] += len(expired)
            self._forget(expired)
        for batch in list(self.registry.pop_overdue(now)):
            if self.interactive:
                self.interactive.overdue(batch, now)
                continue
            self.registry.counters["ttl_killed"] += 1
            self._append_log(
                batch, f"livy-server: killed after running longer than livy.server.batch.ttl ({self.config.batch_ttl:g}s)"
            )
            self._spawn(self._kill(batch))

    def wake_collector(self) -> None:
        self._wake.set()

    def _live_deadline(self, batch: Batch) -> float | None:
        """When an active session is ended whatever it does: a batch's livy.server.batch.ttl, a session's clocks."""
        if self.interactive:
            return self.interactive.deadline(batch)
        return batch.created_at + self.config.batch_ttl if self.config.batch_ttl else None

    def rearm(self, batch: Batch) -> None:
        """A live deadline may have moved earlier (a session went idle): the collector must know."""
        if self.registry.arm(batch):
            self._wake.set()

    def end(self, batch: Batch, line: str) -> None:
        """End an active session for a reason the server has (a clock ran out), with a line in its log saying so."""
        self._append_log(batch, line)
        self._spawn(self._kill(batch))

    # --- views -----------------------------------------------------------------------------
    def recent_log(self, batch: Batch, count: int = VIEW_LOG_LINES) -> list[str]:
        if batch.tail is not None:
            return list(batch.tail)[-count:]
        return logs.tail_lines(self.log_path(batch.id), count)

    def view(self, batch: Batch) -> dict[str, Any]:
        base = {
            "id": batch.id,
            "name": batch.name,
            "owner": batch.owner,
            "proxyUser": batch.proxy_user,
            "state": batch.state,
            "appId": batch.app_id,
            "appInfo": {"driverLogUrl": batch.driver_log_url, "sparkUiUrl": batch.ui_url, "executorLogUrls": None},
            "log": self.recent_log(batch),
            "createdAt": batch.created_at,
            "finishedAt": batch.finished_at,
            "expiresAt": self.registry.expires_at(batch),
        }
        return self.interactive.view(batch, base) if self.interactive else base

    def log_page(self, batch: Batch, start: int | None, size: int) -> dict[str, Any]:
        """Livy's semantics: no `from` means the last `size` lines; a negative size means all."""
        lines, total = logs.read_page(self.log_path(batch.id), start, size)
        if start is None:
            start = total - len(lines)  # the page ends at the last line
        return {"id": batch.id, "from": start, "total": total, "log": lines}


def _http_get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - URL built from the driver's own UI address
        return json.loads(response.read())
