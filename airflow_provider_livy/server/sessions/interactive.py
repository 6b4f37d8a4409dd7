"""What only interactive sessions have: the REPL channel, statements, and the idle/ttl/heartbeat clocks.

The lifecycle (launching, watching the driver process, kill, retention, eviction, store records,
recovery) is the batches' one, in lifecycle.py; the interactive family (families.py) calls in here
where a session differs:
- launch: the driver is our REPL (server/repl/livy_repl, one zip) with the channel settings in its
  environment (the secret never on a command line);
- up: not when the driver prints its start, but when the REPL calls back with its address;
- state: one long poll of the driver's /status per busy session follows idle/busy and its activity
  (repl_status.py);
- clocks: idleTimeout (else livy.server.session.timeout) ends a session idle that long, never a
  busy one; ttl ends a session that old; heartbeatTimeoutInSecond ends one whose client stopped
  calling /sessions/{id}. All are wall-clock times stored with the record, so a restart neither
  extends nor shortens them;
- statements, cancel and completion are passed to the driver, which keeps them (bounded), so a
  restarted server loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import time
from typing import Any

from airflow_provider_livy.protocol import (
    BUSY,
    DEFAULT_SESSION_NAME,
    IDLE,
    RECOVERING,
    SPARKR,
    STARTING,
    RequestError,
)
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from airflow_provider_livy.server.repl import driver_file
from airflow_provider_livy.server.repl.livy_repl.r_setup import locate_sparkr
from airflow_provider_livy.server.sessions.contract import Lifecycle
from airflow_provider_livy.server.sessions.model import HEARTBEAT, IDLE_CLOCK, START, TTL, Repl, Session
from airflow_provider_livy.server.sessions.repl_client import ReplChannel, ReplRefused, ReplUnreachable
from airflow_provider_livy.server.sessions.repl_status import StatusFollower

log = logging.getLogger(__name__)

SHUTDOWN_WAIT = 5.0  # after POST /shutdown, how long Spark may take to stop before the process group is killed
CHANNEL_PREFIX = "LIVY_REPL_"  # the driver's environment variables that carry the channel's settings


class SessionNotReady(RuntimeError):
    """The session cannot take statements in its state (409)."""


def check_sparkr(config: ServerConfig, conf: dict[str, str]) -> None:
    """A sparkr session needs R and SparkR where its driver runs: in local and client mode that is
    this host, so a missing one is a 400 naming it. In cluster mode the driver's node is not known
    here; the driver answers a sparkr statement with that 400 itself."""
    if config.cluster_mode:
        return
    found = locate_sparkr(str(resolve_spark_home(config)), conf, os.environ)
    if isinstance(found, str):
        raise RequestError(
            "session kind 'sparkr' needs R and the SparkR package where its driver runs, "
            f"which is this server's host (deploy mode {config.deploy_mode or 'client'}): {found}"
        )


class Interactive:
    """The interactive side of the interactive family's lifecycle."""

    def __init__(self, service: Lifecycle) -> None:
        self.service = service
        self.config = service.config
        self._channel: ReplChannel | None = None  # made on first use, on the event loop
        self.status = StatusFollower(service, lambda: self.channel)
        self.ended = {START: 0, IDLE_CLOCK: 0, TTL: 0, HEARTBEAT: 0}

    async def warm(self) -> None:
        """Import the channel's HTTP client and make the REPL's zip off the event loop before the first
        session needs them (a server with no sessions never pays their 0.3-0.7 s of import at start-up)."""
        if self._channel is None:
            await asyncio.to_thread(importlib.import_module, "httpx")
            await asyncio.to_thread(driver_file)

    @property
    def channel(self) -> ReplChannel:
        if self._channel is None:
            self._channel = ReplChannel()
        return self._channel

    async def stop(self) -> None:
        self.status.stop()
        if self._channel is not None:
            await self._channel.close()

    # --- creating and launching ----------------------------------------------------------
    async def prepare(self, request: dict[str, Any], now: float) -> Repl:
        if request["kind"] == SPARKR:  # may ask R itself (about 1 s): off the event loop
            await asyncio.to_thread(check_sparkr, self.config, request.get("conf") or {})
        tracker = self.service.tracker
        if self.config.cluster_mode and tracker is None:
            raise RequestError(
                f"interactive sessions in cluster deploy mode need a yarn or k8s:// master, not {self.config.spark_master!r}"
            )
        if self.config.cluster_mode and tracker is not None and not tracker.driver_env:
            # Spark's SparkSubmit refuses it: "Cluster deploy mode is currently not supported for python
            # applications on standalone clusters." Our REPL is a Python application, whatever the kind.
            raise RequestError(
                "interactive sessions cannot run with livy.spark.deploy-mode = cluster on a Spark standalone "
                "master: Spark runs only JVM drivers in standalone cluster mode, and a session's driver is a "
                "Python REPL; use client deploy mode for sessions (batches of JVM apps may stay in cluster mode)"
            )
        if any(CHANNEL_PREFIX in key for key in request.get("conf", {})):
            raise RequestError(f"conf: settings of the driver's {CHANNEL_PREFIX}* environment are set by the server")
        return Repl.new(request, self.config.session_timeout, now)

    def launch_request(self, session: Session, request: dict[str, Any]) -> dict[str, Any]:
        """The spark-submit request: our REPL as the file, the session's name as --name."""
        return {**request, "file": str(driver_file()), "name": session.name or DEFAULT_SESSION_NAME.format(id=session.id)}

    def channel_settings(self, session: Session) -> dict[str, str]:
        """The driver's environment for the channel (the livy_repl package's docstring): by environment in client/local
        mode, through a 0600 properties file in cluster mode (lifecycle.py); never on a command line.
        The callback host: livy.rsc.launcher.address, else the address the server listens on (its host
        name when it listens on all)."""
        assert session.repl is not None
        host = self.config.launcher_address or self.service.ui_host
        return {
            "LIVY_REPL_SECRET": session.repl.secret,
            "LIVY_REPL_CALLBACK": f"http://{host}:{self.config.port}/internal/repl/{session.id}",
            "LIVY_REPL_KIND": session.repl.kind,
            "LIVY_REPL_BIND": "0.0.0.0" if self.config.cluster_mode else "127.0.0.1",
            "LIVY_REPL_IDLE_TIMEOUT": f"{self.config.repl_idle_timeout:g}",
            "LIVY_REPL_RETAINED": str(self.config.retained_statements),
            "LIVY_REPL_MAX_OUTPUT": str(self.config.statement_max_output),
            "LIVY_REPL_SQL_ROWS": str(self.config.sql_num_rows),
        }

    def authentic(self, session: Session, authorization: str | None) -> bool:
        """Whether a callback carries this session's secret (constant-time compare)."""
        if session.repl is None or not session.repl.secret or not authorization or not authorization.startswith("Bearer "):
            return False
        return secrets.compare_digest(authorization[7:].encode(), session.repl.secret.encode())

    def ready(self, session: Session, address: str, app_id: str | None, ui_url: str | None) -> None:
        """The REPL called back: the session is up."""
        assert session.repl is not None
        session.repl.address = address
        if app_id and session.app_id is None:
            session.app_id = app_id
        if ui_url and session.ui_url is None:
            session.ui_url = ui_url
        if session.state in (STARTING, RECOVERING):
            session.repl.last_activity = self.service.clock()  # connecting is activity (as in Livy): the idle clock starts now
            self.service.mark_up(session, IDLE)
        self.status.follow(session)

    # --- the clocks ------------------------------------------------------------------------
    def deadline(self, session: Session) -> float | None:
        if session.repl is None:
            return None
        due = session.repl.deadline(session.state, session.created_at, self.config.session_timeout)
        return None if due is None else due[0]

    def overdue(self, session: Session, now: float) -> None:
        """A clock ran out: say which in the session's log, count it, end the session."""
        repl = session.repl
        if repl is None or session.kill_requested:
            return
        due = repl.deadline(session.state, session.created_at, self.config.session_timeout)
        reason = due[1] if due else TTL
        why = {
            START: f"its driver did not come up within {self.config.session_timeout:g}s (livy.server.session.timeout)",
            IDLE_CLOCK: f"idle for {repl.idle_timeout:g}s (idleTimeout, else livy.server.session.timeout)",
            TTL: f"older than its ttl of {repl.ttl or 0:g}s",
            HEARTBEAT: f"no client called /sessions/{session.id} for {repl.heartbeat}s (heartbeatTimeoutInSecond)",
        }[reason]
        if reason == IDLE_CLOCK and repl.address:
            self.service.spawn(self._end_if_still_idle(session, why))
            return
        self._end(session, reason, why)

    def _end(self, session: Session, reason: str, why: str) -> None:
        assert session.repl is not None
        session.repl.ended_by = reason
        self.ended[reason] += 1
        self.service.end(session, f"session ended: {why}")

    async def _end_if_still_idle(self, session: Session, why: str) -> None:
        """Idleness is confirmed with the driver first: a statement it runs, or finished just now, spares it."""
        repl = session.repl
        assert repl is not None
        await self.status.refresh(session)
        due = repl.deadline(session.state, session.created_at, self.config.session_timeout)
        if session.active and not session.kill_requested and due is not None and due[0] <= self.service.clock():
            if due[1] == IDLE_CLOCK:
                self._end(session, IDLE_CLOCK, why)
            else:
                self.overdue(session, self.service.clock())
        else:
            self.service.rearm(session)
            if session.state == BUSY:
                self.status.follow(session)

    def touch(self, session: Session) -> None:
        """Activity (statement submitted, cancel, completion): the idle clock starts again. Not written to
        the store each time: the driver keeps the time of its last statement activity, and a restarted
        server takes it from the driver's first /status (only a completion since the last write is lost)."""
        if session.repl is not None:
            session.repl.last_activity = self.service.clock()

    def heartbeat(self, session: Session) -> None:
        """Any call on /sessions/{id}...: the client is alive. Stored at most every quarter timeout,
        so polling costs no store write; a restart may thus shorten a heartbeat clock by that much."""
        repl = session.repl
        if repl is None or not repl.heartbeat:
            return
        now = self.service.clock()
        repl.last_heartbeat = now
        if now - repl.heartbeat_saved >= repl.heartbeat / 4:
            repl.heartbeat_saved = now
            self.service.persist(session)

    # --- statements --------------------------------------------------------------------------
    def _live(self, session: Session) -> tuple[str, str]:
        repl = session.repl
        if repl is None or not session.active or not repl.address or session.kill_requested:
            raise SessionNotReady(f"session {session.id} is {session.state}: statements are taken once it is idle or busy")
        return repl.address, repl.secret

    async def call(self, session: Session, method: str, path: str, *, activity: bool = False, **kwargs: Any) -> bytes:
        """A statement call passed to the driver; its answer bytes come back untouched."""
        address, secret = self._live(session)
        raw = await self.channel.call(address, secret, method, path, **kwargs)
        if activity:
            self.touch(session)
        if method == "POST" and path.startswith("/statements") and session.repl is not None:
            session.repl.poll_again = True  # busy now, or soon: follow it until it is idle again
            self.status.follow(session)
        return raw

    @staticmethod
    def statement_id(raw: bytes) -> int:
        """The id in a statement the driver answered (for the Location header)."""
        try:
            return int(json.loads(raw)["id"])
        except (ValueError, KeyError, TypeError):
            raise ReplUnreachable("the session's driver answered a statement without an id") from None

    async def shutdown(self, session: Session, wait: float = 0.0) -> None:
        """Ask the REPL to stop Spark and exit; the caller kills the process group after SHUTDOWN_WAIT.
        `wait`: a driver in a cluster, whose process we cannot watch: until it stops answering, at most that long."""
        repl = session.repl
        if repl is None or not repl.address:
            return
        if repl.follower is not None:
            repl.follower.cancel()
        with contextlib.suppress(ReplUnreachable, ReplRefused):
            await self.channel.call(repl.address, repl.secret, "POST", "/shutdown")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                await self.channel.call(repl.address, repl.secret, "GET", "/status")
            except ReplUnreachable:
                return
            except ReplRefused:
                pass  # stopping: it still answers
            await asyncio.sleep(0.1)
