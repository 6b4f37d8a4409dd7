"""Recovery at start-up: re-attach what still runs, purge what is long dead, never reuse an id.

The story behind this project is a restart that reloaded 40,000 dead sessions. Here the index
(stores.index) says which records expired while the server was down; those are deleted in bulk
without being read and are never registered. Only the records that may still matter are read
before serving starts: active sessions, finished ones still within their retention, and a bounded
number of records missing from the index (a real Livy's, or one whose index entry a crash lost).
Any further unindexed records are read once serving has started.

What a record means on restart:
- finished (success/dead/killed): kept until finishedAt + state-retain, as if no restart happened.
- active with a live driver (pid and its start time match): re-attached; its log keeps flowing.
- handed over to a cluster (deploy mode cluster): followed there again through the tracker the
  record names (its coordinates), whatever port or host this server runs on; a driver the cluster
  no longer knows ends dead with a log line saying so.
- active whose driver is gone: its exit file, written by the supervisor, gives the real outcome;
  without one it is dead. A line in the session's log says which.
- queued (starting, never launched), or a group's held start that never started: launched again.
- written by Apache Livy (no timestamps, no pid): nothing can be re-attached, so it is dead,
  finished at the record's modification time, and kept for state-retain from then.
- unparseable: logged and removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any

import orjson
import psutil

from airflow_provider_livy.protocol import ALL_STATES, BUSY, DEAD, FAMILIES, IDLE, RECOVERING, STARTING, SUCCESS, TERMINAL_STATES
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers import cluster, launcher, logs
from airflow_provider_livy.server.fence import Fence
from airflow_provider_livy.server.sessions.lifecycle import SessionService, family_services
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.stores import open_store
from airflow_provider_livy.server.stores.base import RecoverableStore
from airflow_provider_livy.server.stores.index import Snapshot, chunks, entry_finished

log = logging.getLogger(__name__)

FOREGROUND_READS = 2000  # records read before serving; further unindexed ones are read after
READ_CHUNK = 1000
SAVE_CHUNK = 500
READ_RETRY_DELAY = 5.0
TEXT_FIELDS = ("name", "appId", "appTag", "owner", "proxyUser", "sparkUiUrl", "clusterId", "driverLogUrl")


def recover_services(config: ServerConfig, fence: Fence | None = None) -> tuple[SessionService, SessionService]:
    """The batch and interactive services with the store's sessions back in them (each family in
    its own store directory, as in Livy); the bulk purges, started here, are awaited once serving.
    A group's leader passes its `fence`: every ZooKeeper write is then conditional on its leadership."""
    stores: list[RecoverableStore] = []
    try:
        for family in FAMILIES:
            stores.append(open_store(config, family.name, fence))
        services = family_services(config, stores)
        for service, store in zip(services, stores, strict=True):
            recovery = Recovery(service, store)
            recovery.run_foreground()
            service.after_start.append(recovery.run_background)
    except BaseException:
        for store in stores:
            store.close()
        raise
    return services


TEXT = (str, type(None))
NUMBERS = (int, float)  # compared by type(): a bool is no number here


def parse_record(session_id: int, raw: bytes) -> dict[str, Any]:
    """A record as Livy or we wrote it; ValueError says what is wrong with anything else. Run for each record
    before a new leader serves (40,000 in a fraction of a second), so its checks are plain type tests."""
    try:
        data = orjson.loads(raw)  # a sixth of json's time
    except orjson.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err})") from None
    if type(data) is not dict:
        raise ValueError("not a JSON object")
    get = data.get
    if get("id") != session_id or type(get("id")) is bool:
        raise ValueError(f"its id {get('id')!r} does not match its key {session_id}")
    for key in TEXT_FIELDS:
        if not isinstance(get(key), TEXT):
            raise ValueError(f"{key} is not a string")
    if "createdAt" not in data:
        return data  # Apache Livy's fields only
    if get("state") not in ALL_STATES:
        raise ValueError(f"unknown state {get('state')!r}")
    if type(data["createdAt"]) not in NUMBERS:
        raise ValueError("createdAt is not a number")
    for key in ("finishedAt", "pidStart"):
        if (value := get(key)) is not None and type(value) not in NUMBERS:
            raise ValueError(f"{key} is not a number")
    if (pid := get("pid")) is not None and type(pid) is not int:
        raise ValueError("pid is not a whole number")
    if not isinstance(get("request"), (dict, type(None))):
        raise ValueError("request is not an object")
    if get("cluster") is not None and not cluster.valid_coordinates(data["cluster"]):
        raise ValueError("cluster does not name a known kind of cluster")
    return data


class Recovery:
    """One start-up's work: the plan from the index, the records read, what is left for after serving."""

    def __init__(self, service: SessionService, store: RecoverableStore) -> None:
        self.service = service
        self.store = store
        self.config = service.config
        self.now = service.clock()
        self.expired: list[int] = []  # ids to delete from the store, never registered
        self.purges: list[tuple[list[int], float, Awaitable[None]]] = []  # (ids, started, removal) under way
        self.to_save: list[Session] = []  # registered sessions whose record must change (state, index)
        self.later: list[int] = []  # unindexed records read once serving
        self.stats: Counter[str] = Counter()
        self.notes: list[tuple[int, str]] = []  # (id, why): written to the sessions' logs once serving
        self._supervisors: dict[str, psutil.Process] | None = None

    # --- before serving -------------------------------------------------------------------
    def run_foreground(self) -> None:
        started = time.monotonic()
        snap = self.store.scan()
        read_now = self.plan(snap)
        self._start_purge()  # ZooKeeper deletes the expired while the records are read and the server starts
        registry = self.service.registry
        registry.next_id = max(snap.next_session_id, max(snap.record_ids | snap.index.keys(), default=-1) + 1)
        sessions = self.restore(self.store.read_records(read_now), snap.index.keys())
        for session in sorted(sessions, key=lambda b: b.id):
            self.service.adopt(session)
        log.info(
            "recovery: %d records in the store; %d registered (%s), %d expired or unreadable to purge, "
            "%d unindexed to read after start-up; next id %d; took %.2fs",
            len(snap.record_ids),
            len(sessions),
            ", ".join(f"{count} {what}" for what, count in sorted(self.stats.items())) or "none active",
            len(self.expired),
            len(self.later),
            registry.next_id,
            time.monotonic() - started,
        )

    def plan(self, snap: Snapshot) -> list[int]:
        """Which ids to read now; the expired ones (per the index alone) go straight to the purge list."""
        retain, read_now = self.config.state_retain, []
        for session_id, name in snap.index.items():
            gone = session_id not in snap.record_ids  # an index entry whose record was deleted
            finished = entry_finished(name)
            if gone or (finished is not None and finished + retain <= self.now):
                self.expired.append(session_id)
            else:
                read_now.append(session_id)
        unindexed = sorted(snap.record_ids - snap.index.keys())
        room = max(0, FOREGROUND_READS - len(read_now))
        self.later = unindexed[room:]
        return sorted(read_now) + unindexed[:room]

    # --- one record -------------------------------------------------------------------------
    def restore(self, rows: Iterable[tuple[int, bytes | None, float]], indexed: Iterable[int]) -> list[Session]:
        indexed = set(indexed)
        sessions = []
        for session_id, raw, mtime in rows:
            if raw is None:  # deleted since the listing
                self.expired.append(session_id)
                continue
            try:
                data = parse_record(session_id, raw)
            except ValueError as err:
                word = self.service.family.protocol.word
                log.warning("removing the unparseable record of %s %s from the state store: %s", word, session_id, err)
                self.stats["corrupt records removed"] += 1
                self.expired.append(session_id)
                continue
            session = Session.from_record(data, mtime)
            self.service.family.restore(session, data)
            if session.cluster is not None:
                # One object per cluster, swapped in while the record's own copy is the newest garbage: kept
                # until start-up, 10,000 copies (4 MB) leave their memory pools empty among live objects.
                session.cluster = self.service.follower.shared(session.cluster)
            changed = session_id not in indexed
            if session.active:
                changed = self._reattach(session) or changed
            if self._expired(session):
                self.expired.append(session_id)
                continue
            if "createdAt" not in data:
                self.stats["from Apache Livy records"] += 1
                self._note(
                    session,
                    "recovered from a record written by Apache Livy: no driver process to re-attach, marked dead",
                )
            if changed:
                self.to_save.append(session)
            sessions.append(session)
        return sessions

    def _reattach(self, session: Session) -> bool:
        """Follow a live driver again, or settle a gone one; True when the record must change."""
        log_path, exit_path = self.service.files.log(session.id), self.service.files.exit_code(session.id)
        if session.state == STARTING and session.request is not None and not self._may_have_started(session, log_path, exit_path):
            changed = session.pid is not None
            if log_path.exists():
                self._note(session, "its held start was never confirmed by the store, so nothing ran: launched again")
            session.pid = session.pid_start = None
            exit_path.unlink(missing_ok=True)
            session.tail = self.service.family.new_tail()
            self.stats["queued again"] += 1
            return changed
        changed = False
        # (a record naming the driver's cluster id was written after spark-submit handed it over: none to find)
        if session.pid is None and session.cluster_id is None and (found := self._find_supervisor(exit_path)) is not None:
            session.pid, session.pid_start, changed = found.pid, found.create_time(), True  # launched, pid never persisted
        submitting = session.pid is not None
        submitter_alive = session.pid is not None and launcher.is_alive(session.pid, session.pid_start)
        if not (submitter_alive and session.state == STARTING):
            session.request = None  # (a live one may be a held start, still to be told or to end NOT_STARTED)
        if session.cluster is not None and not submitter_alive:
            self.service.files.properties(session.id).unlink(missing_ok=True)  # spark-submit ended while we were down
        if session.cluster is not None and self._handed_over(session, log_path, exit_path):
            if session.repl is not None and session.state in (IDLE, BUSY):
                session.state = RECOVERING  # until its REPL's first /status says idle or busy
            self.stats["followed in their cluster again"] += 1
            return changed or submitting  # the record changes only if spark-submit ended while we were down
        if session.pid is not None and psutil.pid_exists(session.pid) and launcher.is_alive(session.pid, session.pid_start):
            session.tail = self.service.family.new_tail()
            if session.state in (IDLE, BUSY):
                session.state = RECOVERING  # until the driver's first /status says idle or busy
            self.stats["re-attached"] += 1
            return changed
        code = launcher.read_exit_code(exit_path)
        driver = f"its driver (pid {session.pid})" if session.pid is not None else "its driver"
        if code is None:
            self._note(session, f"the server restarted and {driver} was gone without leaving an exit code: marked dead")
            session.finished_at = self.now
        else:
            self._note(session, f"{driver} ended with exit code {code} while the server was down")
            session.finished_at = exit_path.stat().st_mtime
        session.state = SUCCESS if code == 0 and self.service.family.can_succeed else DEAD  # a session never succeeds
        if session.app_id is None:  # printed just before the crash, before the server read it
            session.app_id = launcher.find_app_id(log_path)
        self.stats["ended while down"] += 1
        return True

    def _handed_over(self, session: Session, log_path: Path, exit_path: Path) -> bool:
        """Whether spark-submit handed the driver to its cluster (also while the server was down); then
        the service follows it there. False while spark-submit still runs here, or when it failed before
        naming a driver. A cluster id already in the record means the driver was submitted: it is followed
        even when spark-submit's exit code is not on this host (a restart on another host)."""
        if session.pid is not None:
            if launcher.is_alive(session.pid, session.pid_start):
                return False
            if session.cluster_id is None and launcher.read_exit_code(exit_path) == 0:
                tracker = self.service.follower.tracker(session.cluster or {})
                found = cluster.find_submitted_id(tracker, log_path)
                session.cluster_id = found or (session.app_tag if tracker.finds_by_tag else None)
            if session.cluster_id is None:
                return False
            session.pid = session.pid_start = None
        return session.cluster_id is not None

    def _may_have_started(self, session: Session, log_path: Path, exit_path: Path) -> bool:
        """Whether a session that still holds its request may have a driver (else it is launched again).
        - No log file: nothing was ever spawned for it.
        - Its launch mark names a pid (a group's held start): alive, it may still be told to start, so it is
          followed; ended, its exit file says whether it started anything.
        - No mark: a held supervisor found will never be told (its mark can no longer land), so it is stopped;
          one not held (a single server's launch whose pid never reached the store) started its driver."""
        if session.pid is not None:
            alive = launcher.is_alive(session.pid, session.pid_start)
            return alive or launcher.read_exit_code(exit_path) != launcher.NOT_STARTED
        if not log_path.exists():
            return False
        found = self._find_supervisor(exit_path)
        if found is None:
            return launcher.read_exit_code(exit_path) != launcher.NOT_STARTED
        if not launcher.is_held(found.info.get("cmdline") or []):
            return True
        launcher.signal_group(found.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            found.wait(5)  # gone before its exit file is removed: none can appear after
        return False

    def _find_supervisor(self, exit_path: Path) -> psutil.Process | None:
        """A driver launched just before a crash, before its pid reached the store: found by its exit file argument."""
        if self._supervisors is None:
            self._supervisors = {}
            for proc in psutil.process_iter(["cmdline"]):
                cmdline = proc.info.get("cmdline") or []
                if "--" in cmdline and cmdline.index("--") >= 1:
                    self._supervisors[cmdline[cmdline.index("--") - 1]] = proc
            # psutil keeps every process it listed for its next listing (2,600 on a busy host: 2.3 MB) for good
            if clear := getattr(psutil.process_iter, "cache_clear", None):
                clear()
        return self._supervisors.get(str(exit_path))

    def _expired(self, session: Session) -> bool:
        retain, ttl = self.config.state_retain, self.config.batch_ttl
        if session.state in TERMINAL_STATES:
            return (session.finished_at or session.created_at) + retain <= self.now
        in_cluster = session.cluster and session.cluster_id and session.pid is None
        if ttl and session.created_at + ttl + retain <= self.now and not in_cluster:
            # (a driver in a cluster is followed again instead, and the collector's ttl kills it there)
            if session.pid is not None and launcher.is_alive(session.pid, session.pid_start):
                launcher.signal_group(session.pid, signal.SIGKILL)
            self._note(session, f"killed at restart: it ran past livy.server.session.ttl ({ttl:g}s) long ago")
            return True
        return False

    def _note(self, session: Session, line: str) -> None:
        self.notes.append((session.id, line))

    def _write_notes(self) -> None:
        """Why a session ended, in its own log where the user looks, and in the server's (only there when
        its log cannot be written: a full disk must not end recovery's work once serving)."""
        notes, self.notes = self.notes, []
        for session_id, line in notes:
            logs.note(self.service.files.log(session_id), self.service.family.protocol.word, session_id, line)

    # --- once serving -----------------------------------------------------------------------
    async def run_background(self) -> None:
        await asyncio.to_thread(self._write_notes)
        await self._purge()
        await self._save_changed()
        for chunk in chunks(self.later, READ_CHUNK):
            rows = await self._read_until_done(chunk)
            for session in self.restore(rows, ()):
                self.service.adopt(session)
            await asyncio.to_thread(self._write_notes)
            registry = self.service.registry
            registry.sessions = dict(sorted(registry.sessions.items()))  # listings page in id order
            await self._save_changed()
            await self._purge()
        if self.later:
            log.info("recovery: read the %d unindexed records", len(self.later))

    async def _read_until_done(self, ids: list[int]) -> list[tuple[int, bytes | None, float]]:
        """Serving has started, so a store fault here is waited out, not fatal."""
        while True:
            try:
                return await asyncio.to_thread(self.store.read_records, ids)
            except OSError as err:
                log.warning("recovery: reading %d unindexed records failed (%s); retry in %gs", len(ids), err, READ_RETRY_DELAY)
                await asyncio.sleep(READ_RETRY_DELAY)

    async def _save_changed(self) -> None:
        sessions, self.to_save = self.to_save, []
        for chunk in chunks(sessions, SAVE_CHUNK):
            await self.service.writer.save_many(chunk)

    def _start_purge(self) -> None:
        """Hand the expired ids to the store; its removal may start at once, before serving (ZooKeeper's does)."""
        ids, self.expired = self.expired, []
        if ids:
            self.purges.append((ids, time.monotonic(), self.store.remove(ids)))

    async def _purge(self) -> None:
        self._start_purge()
        purges, self.purges = self.purges, []
        for ids, started, removal in purges:
            await removal
            await asyncio.to_thread(self.service.files.remove, ids)
            log.info("recovery: purged %d expired or unreadable records in %.2fs", len(ids), time.monotonic() - started)
