"""What only interactive sessions have: the REPL channel, statements, and the idle/ttl/heartbeat clocks.

The lifecycle (launching, watching the driver process, kill, retention, eviction, store records,
recovery) is the batches' one, in lifecycle.py; it calls in here where a session differs:
- launch: the driver is our REPL (server/repl/driver.py) with the channel settings in its
  environment (the secret never on a command line);
- up: not when the driver prints its start, but when the REPL calls back with its address;
- state: one long poll of the driver's /status per session follows idle/busy and its activity;
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_livy.protocol import (
    BUSY,
    DEFAULT_SESSION_NAME,
    IDLE,
    RECOVERING,
    RESOURCE_FIELDS,
    SPARKR,
    STARTING,
    BatchRequestError,
    duration_seconds,
)
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from airflow_provider_livy.server.repl.driver import locate_sparkr
from airflow_provider_livy.server.sessions.repl_client import ReplChannel, ReplRefused, ReplUnreachable

if TYPE_CHECKING:
    from airflow_provider_livy.server.config import ServerConfig
    from airflow_provider_livy.server.sessions.lifecycle import SessionService
    from airflow_provider_livy.server.sessions.registry import Batch

log = logging.getLogger(__name__)

REPL_DIR = Path(__file__).resolve().parent.parent / "repl"
DRIVER_FILE = REPL_DIR / "driver.py"
STATUS_WAIT_MAX = 30.0  # one /status long poll; well under the driver's idle-exit clock
KEEPALIVE_MAX = 60.0  # seconds between keep-alive pings of a resting session's driver
KEEPALIVE_BATCH = 64  # pings in flight at once
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # after a failed /status
SHUTDOWN_WAIT = 5.0  # after POST /shutdown, how long Spark may take to stop before the process group is killed
START, TTL, HEARTBEAT = "start", "ttl", "heartbeat"  # with IDLE: why the server ended a session (metrics, log lines)
CHANNEL_PREFIX = "LIVY_REPL_"  # the driver's environment variables that carry the channel's settings
VIEW_SETTINGS = (*RESOURCE_FIELDS, "conf", "heartbeatTimeoutInSecond", "ttl", "idleTimeout")


class SessionNotReady(RuntimeError):
    """The session cannot take statements in its state (409)."""


@dataclass(slots=True, eq=False)
class Repl:
    """What only an interactive session has. Times are wall-clock epoch seconds."""

    kind: str
    secret: str  # the channel's bearer token: in the record (to reconnect after a restart), never in a view or log
    settings: dict[str, Any]  # the request fields the view echoes back
    idle_timeout: float
    ttl: float | None
    heartbeat: int  # seconds, 0 = off
    last_activity: float
    last_heartbeat: float
    address: str | None = None  # http://host:port of the driver's REPL, once it called back
    heartbeat_saved: float = 0.0  # the last heartbeat written to the store
    version: int = -1  # the driver's /status version last seen
    counts: tuple[int, int, int] = (0, 0, 0)  # statements run, failed, cancelled, as the driver last said
    follower: asyncio.Task[None] | None = None
    poll_again: bool = False  # a statement went to the driver: its follower must look again before it rests
    ended_by: str | None = None

    def deadline(self, state: str, created_at: float, start_timeout: float) -> tuple[float, str] | None:
        """The earliest clock that will end the session, and which. Idleness never ends a busy one, and
        counts only once the driver is up: a start is bounded by livy.server.session.timeout instead."""
        clocks = []
        if state == STARTING:
            clocks.append((created_at + start_timeout, START))
        elif state != BUSY:
            clocks.append((self.last_activity + self.idle_timeout, IDLE))
        if self.ttl:
            clocks.append((created_at + self.ttl, TTL))
        if self.heartbeat:
            clocks.append((self.last_heartbeat + self.heartbeat, HEARTBEAT))
        return min(clocks) if clocks else None

    def record(self) -> dict[str, Any]:
        """Livy's interactive record fields (kind, heartbeatTimeoutS, ttl, idleTimeout, resources) plus ours."""
        return {
            "kind": self.kind,
            "heartbeatTimeoutS": self.heartbeat,
            **{k: v for k, v in self.settings.items() if k != "heartbeatTimeoutInSecond"},
            "replAddress": self.address,
            "replSecret": self.secret,
            "lastActivityAt": self.last_activity,
            "lastHeartbeatAt": self.last_heartbeat,
        }


def check_sparkr(config: ServerConfig, conf: dict[str, str]) -> None:
    """A sparkr session needs R and SparkR where its driver runs: in local and client mode that is
    this host, so a missing one is a 400 naming it. In cluster mode the driver's node is not known
    here; the driver answers a sparkr statement with that 400 itself."""
    if config.cluster_mode:
        return
    found = locate_sparkr(str(resolve_spark_home(config)), conf, os.environ)
    if isinstance(found, str):
        raise BatchRequestError(
            "session kind 'sparkr' needs R and the SparkR package where its driver runs, "
            f"which is this server's host (deploy mode {config.deploy_mode or 'client'}): {found}"
        )


def new_repl(request: dict[str, Any], config_timeout: float, now: float) -> Repl:
    idle = duration_seconds(request["idleTimeout"]) if "idleTimeout" in request else None
    ttl = duration_seconds(request["ttl"]) if "ttl" in request else None
    return Repl(
        kind=request["kind"],
        secret=secrets.token_urlsafe(32),
        settings={k: request[k] for k in VIEW_SETTINGS if k in request},
        idle_timeout=idle or config_timeout,
        ttl=ttl or None,
        heartbeat=request.get("heartbeatTimeoutInSecond", 0),
        last_activity=now,
        last_heartbeat=now,
        heartbeat_saved=now,
    )


def repl_from_record(data: dict[str, Any], config_timeout: float, created_at: float) -> Repl:
    """A session's Repl back from its store record (recovery)."""
    settings = {k: data[k] for k in VIEW_SETTINGS if data.get(k) is not None}
    if data.get("heartbeatTimeoutS"):
        settings["heartbeatTimeoutInSecond"] = data["heartbeatTimeoutS"]
    repl = new_repl({"kind": data.get("kind") or "pyspark", **settings}, config_timeout, created_at)
    repl.secret = data.get("replSecret") or ""
    repl.address = data.get("replAddress")
    repl.last_activity = data.get("lastActivityAt") or created_at
    repl.last_heartbeat = repl.heartbeat_saved = data.get("lastHeartbeatAt") or created_at
    return repl


class Interactive:
    """The interactive side of one SessionService (the one of the interactive family)."""

    def __init__(self, service: SessionService) -> None:
        self.service = service
        self.config = service.config
        self._channel: ReplChannel | None = None  # made on first use, on the event loop
        self._keepalive: asyncio.Task[None] | None = None
        self.keepalive_interval = min(KEEPALIVE_MAX, max(1.0, self.config.repl_idle_timeout / 3))
        self.counters = {"statements_run": 0, "statements_failed": 0, "statements_cancelled": 0}
        self.ended = {START: 0, IDLE: 0, TTL: 0, HEARTBEAT: 0}
        self.status_wait = min(STATUS_WAIT_MAX, max(1.0, self.config.repl_idle_timeout / 3))

    async def warm(self) -> None:
        """Import the channel's HTTP client off the event loop before the first session needs it
        (a server with no sessions never pays its 0.3-0.7 s of import at start-up)."""
        if self._channel is None:
            await asyncio.to_thread(importlib.import_module, "httpx")

    @property
    def channel(self) -> ReplChannel:
        if self._channel is None:
            self._channel = ReplChannel()
        return self._channel

    async def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        for batch in list(self.service.registry.batches.values()):
            if batch.repl is not None and batch.repl.follower is not None:
                batch.repl.follower.cancel()
        if self._channel is not None:
            await self._channel.close()

    # --- creating and launching ----------------------------------------------------------
    async def prepare(self, request: dict[str, Any], now: float) -> Repl:
        if request["kind"] == SPARKR:  # may ask R itself (about 1 s): off the event loop
            await asyncio.to_thread(check_sparkr, self.config, request.get("conf") or {})
        tracker = self.service.tracker
        if self.config.cluster_mode and tracker is None:
            raise BatchRequestError(
                f"interactive sessions in cluster deploy mode need a yarn or k8s:// master, not {self.config.spark_master!r}"
            )
        if self.config.cluster_mode and tracker is not None and not tracker.driver_env:
            # Spark's SparkSubmit refuses it: "Cluster deploy mode is currently not supported for python
            # applications on standalone clusters." Our REPL is a Python application, whatever the kind.
            raise BatchRequestError(
                "interactive sessions cannot run with livy.spark.deploy-mode = cluster on a Spark standalone "
                "master: Spark runs only JVM drivers in standalone cluster mode, and a session's driver is a "
                "Python REPL; use client deploy mode for sessions (batches of JVM apps may stay in cluster mode)"
            )
        if any(CHANNEL_PREFIX in key for key in request.get("conf", {})):
            raise BatchRequestError(f"conf: settings of the driver's {CHANNEL_PREFIX}* environment are set by the server")
        return new_repl(request, self.config.session_timeout, now)

    def launch_request(self, batch: Batch, request: dict[str, Any]) -> dict[str, Any]:
        """The spark-submit request: our REPL as the file, the session's name as --name."""
        return {**request, "file": str(DRIVER_FILE), "name": batch.name or DEFAULT_SESSION_NAME.format(id=batch.id)}

    def channel_settings(self, batch: Batch) -> dict[str, str]:
        """The driver's environment for the channel (driver.py's docstring): by environment in client/local
        mode, through a 0600 properties file in cluster mode (lifecycle.py); never on a command line.
        The callback host: livy.rsc.launcher.address, else the address the server listens on (its host
        name when it listens on all)."""
        assert batch.repl is not None
        host = self.config.launcher_address or self.service.ui_host
        return {
            "LIVY_REPL_SECRET": batch.repl.secret,
            "LIVY_REPL_CALLBACK": f"http://{host}:{self.config.port}/internal/repl/{batch.id}",
            "LIVY_REPL_KIND": batch.repl.kind,
            "LIVY_REPL_BIND": "0.0.0.0" if self.config.cluster_mode else "127.0.0.1",
            "LIVY_REPL_IDLE_TIMEOUT": f"{self.config.repl_idle_timeout:g}",
            "LIVY_REPL_RETAINED": str(self.config.retained_statements),
            "LIVY_REPL_MAX_OUTPUT": str(self.config.statement_max_output),
            "LIVY_REPL_SQL_ROWS": str(self.config.sql_num_rows),
        }

    def authentic(self, batch: Batch, authorization: str | None) -> bool:
        """Whether a callback carries this session's secret (constant-time compare)."""
        if batch.repl is None or not batch.repl.secret or not authorization or not authorization.startswith("Bearer "):
            return False
        return secrets.compare_digest(authorization[7:].encode(), batch.repl.secret.encode())

    def ready(self, batch: Batch, address: str, app_id: str | None, ui_url: str | None) -> None:
        """The REPL called back: the session is up."""
        assert batch.repl is not None
        batch.repl.address = address
        if app_id and batch.app_id is None:
            batch.app_id = app_id
        if ui_url and batch.ui_url is None:
            batch.ui_url = ui_url
        if batch.state in (STARTING, RECOVERING):
            batch.repl.last_activity = self.service.clock()  # connecting is activity (as in Livy): the idle clock starts now
            self.service.set_up(batch, IDLE)
        self.follow(batch)

    # --- following the driver --------------------------------------------------------------
    def follow(self, batch: Batch) -> None:
        repl = batch.repl
        if repl is not None and repl.address and (repl.follower is None or repl.follower.done()):
            repl.follower = asyncio.create_task(self._follow(batch))
        self._ensure_keepalive()

    async def _follow(self, batch: Batch) -> None:
        """/status long polls while the session is busy (or just came up); it rests once the driver says
        idle, since only a statement sent through this server makes it busy again (call() wakes it).
        An idle session thus holds no connection and no task: the keep-alive pings it now and then."""
        repl = batch.repl
        assert repl is not None
        try:
            await self._follow_until_idle(batch, repl)
        finally:
            if repl.follower is asyncio.current_task():
                repl.follower = None  # a resting session holds no task, not even a finished one

    async def _follow_until_idle(self, batch: Batch, repl: Repl) -> None:
        failures = 0
        while batch.active and not batch.kill_requested and repl.address:
            repl.poll_again = False
            wait = self.status_wait if batch.state == BUSY else 0.0
            try:
                status = await self.channel.call_json(
                    repl.address,
                    repl.secret,
                    "GET",
                    "/status",
                    params={"wait": f"{wait:g}", "version": repl.version},
                    wait=wait,
                )
            except (ReplUnreachable, ReplRefused) as err:
                if failures == 0:
                    log.warning("session %s: %s", batch.id, err)
                await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])
                failures += 1
                continue
            failures = 0
            if isinstance(status, dict):
                self._apply(batch, status)
            if batch.state == IDLE and not repl.poll_again:
                return

    def _ensure_keepalive(self) -> None:
        if self._keepalive is None or self._keepalive.done():
            self._keepalive = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        """Every third of livy.rsc.server.idle-timeout (at most a minute), one /status to each resting
        session: its driver knows the server is there (else it exits, as it should when the server is gone
        for good), and the server learns its latest activity and whether it is still there."""
        while True:
            await asyncio.sleep(self.keepalive_interval)
            resting = [
                b
                for b in list(self.service.registry.batches.values())
                if b.repl is not None
                and b.repl.address
                and b.active
                and not b.kill_requested
                and (b.repl.follower is None or b.repl.follower.done())
            ]
            for start in range(0, len(resting), KEEPALIVE_BATCH):
                await asyncio.gather(*(self._ping(b) for b in resting[start : start + KEEPALIVE_BATCH]))

    async def _ping(self, batch: Batch) -> None:
        repl = batch.repl
        assert repl is not None and repl.address
        try:
            status = await self.channel.call_json(repl.address, repl.secret, "GET", "/status")
        except (ReplUnreachable, ReplRefused) as err:
            log.warning("session %s: keep-alive: %s", batch.id, err)
            return
        if isinstance(status, dict):
            self._apply(batch, status)
            if batch.state != IDLE:
                self.follow(batch)

    def _apply(self, batch: Batch, status: dict[str, Any]) -> None:
        repl = batch.repl
        assert repl is not None
        if isinstance(status.get("version"), int):
            repl.version = status["version"]
        changed = False
        last = status.get("lastActivity")
        if isinstance(last, int | float) and last / 1000 > repl.last_activity:
            repl.last_activity, changed = last / 1000, True
        counts = status.get("statements")
        if isinstance(counts, dict):
            new = tuple(int(counts.get(k) or 0) for k in ("run", "failed", "cancelled"))
            for name, before, after in zip(self.counters, repl.counts, new, strict=True):
                self.counters[name] += max(0, after - before)
            repl.counts = new  # type: ignore[assignment]
        state = status.get("state")
        if state in (IDLE, BUSY) and batch.active and not batch.kill_requested and state != batch.state:
            self.service.set_up(batch, state)
        elif changed:
            self.service.rearm(batch)

    # --- the clocks ------------------------------------------------------------------------
    def deadline(self, batch: Batch) -> float | None:
        if batch.repl is None:
            return None
        due = batch.repl.deadline(batch.state, batch.created_at, self.config.session_timeout)
        return None if due is None else due[0]

    def overdue(self, batch: Batch, now: float) -> None:
        """A clock ran out: say which in the session's log, count it, end the session."""
        repl = batch.repl
        if repl is None or batch.kill_requested:
            return
        due = repl.deadline(batch.state, batch.created_at, self.config.session_timeout)
        reason = due[1] if due else TTL
        why = {
            START: f"its driver did not come up within {self.config.session_timeout:g}s (livy.server.session.timeout)",
            IDLE: f"idle for {repl.idle_timeout:g}s (idleTimeout, else livy.server.session.timeout)",
            TTL: f"older than its ttl of {repl.ttl or 0:g}s",
            HEARTBEAT: f"no client called /sessions/{batch.id} for {repl.heartbeat}s (heartbeatTimeoutInSecond)",
        }[reason]
        if reason == IDLE and repl.address:
            self.service._spawn(self._end_if_still_idle(batch, why))
            return
        self._end(batch, reason, why)

    def _end(self, batch: Batch, reason: str, why: str) -> None:
        assert batch.repl is not None
        batch.repl.ended_by = reason
        self.ended[reason] += 1
        self.service.end(batch, f"livy-server: session ended: {why}")

    async def _end_if_still_idle(self, batch: Batch, why: str) -> None:
        """Idleness is confirmed with the driver first: a statement it runs, or finished just now, spares it."""
        repl = batch.repl
        assert repl is not None and repl.address
        with contextlib.suppress(ReplUnreachable, ReplRefused):
            status = await self.channel.call_json(repl.address, repl.secret, "GET", "/status")
            if isinstance(status, dict):
                self._apply(batch, status)
        due = repl.deadline(batch.state, batch.created_at, self.config.session_timeout)
        if batch.active and not batch.kill_requested and due is not None and due[0] <= self.service.clock():
            if due[1] == IDLE:
                self._end(batch, IDLE, why)
            else:
                self.overdue(batch, self.service.clock())
        else:
            self.service.rearm(batch)
            if batch.state == BUSY:
                self.follow(batch)

    def touch(self, batch: Batch) -> None:
        """Activity (statement submitted, cancel, completion): the idle clock starts again. Not written to
        the store each time: the driver keeps the time of its last statement activity, and a restarted
        server takes it from the driver's first /status (only a completion since the last write is lost)."""
        if batch.repl is not None:
            batch.repl.last_activity = self.service.clock()

    def heartbeat(self, batch: Batch) -> None:
        """Any call on /sessions/{id}...: the client is alive. Stored at most every quarter timeout,
        so polling costs no store write; a restart may thus shorten a heartbeat clock by that much."""
        repl = batch.repl
        if repl is None or not repl.heartbeat:
            return
        now = self.service.clock()
        repl.last_heartbeat = now
        if now - repl.heartbeat_saved >= repl.heartbeat / 4:
            repl.heartbeat_saved = now
            self.service._persist(batch)

    def expires_at(self, batch: Batch) -> float | None:
        """For the view: when idleness or ttl will end an active session (None while busy without ttl)."""
        repl = batch.repl
        if repl is None:
            return None
        clocks = [batch.created_at + repl.ttl] if repl.ttl else []
        if batch.state != BUSY:
            clocks.append(repl.last_activity + repl.idle_timeout)
        return min(clocks) if clocks else None

    # --- statements --------------------------------------------------------------------------
    def _live(self, batch: Batch) -> tuple[str, str]:
        repl = batch.repl
        if repl is None or not batch.active or not repl.address or batch.kill_requested:
            raise SessionNotReady(f"session {batch.id} is {batch.state}: statements are taken once it is idle or busy")
        return repl.address, repl.secret

    async def call(self, batch: Batch, method: str, path: str, *, activity: bool = False, **kwargs: Any) -> bytes:
        """A statement call passed to the driver; its answer bytes come back untouched."""
        address, secret = self._live(batch)
        raw = await self.channel.call(address, secret, method, path, **kwargs)
        if activity:
            self.touch(batch)
        if method == "POST" and path.startswith("/statements") and batch.repl is not None:
            batch.repl.poll_again = True  # busy now, or soon: follow it until it is idle again
            self.follow(batch)
        return raw

    @staticmethod
    def statement_id(raw: bytes) -> int:
        """The id in a statement the driver answered (for the Location header)."""
        try:
            return int(json.loads(raw)["id"])
        except (ValueError, KeyError, TypeError):
            raise ReplUnreachable("the session's driver answered a statement without an id") from None

    async def shutdown(self, batch: Batch, wait: float = 0.0) -> None:
        """Ask the REPL to stop Spark and exit; the caller kills the process group after SHUTDOWN_WAIT.
        `wait`: a driver in a cluster, whose process we cannot watch: until it stops answering, at most that long."""
        repl = batch.repl
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

    def cancel_follower(self, batch: Batch) -> None:
        if batch.repl is not None and batch.repl.follower is not None:
            batch.repl.follower.cancel()
            batch.repl.follower = None

    # --- views -----------------------------------------------------------------------------
    def view(self, batch: Batch, base: dict[str, Any]) -> dict[str, Any]:
        """Livy's session view: its keys, the resource fields echoed, then ours."""
        repl = batch.repl
        assert repl is not None
        settings = repl.settings
        return {
            "id": base["id"],
            "name": base["name"],
            "appId": base["appId"],
            "owner": base["owner"],
            "proxyUser": base["proxyUser"],
            "state": base["state"],
            "kind": repl.kind,
            "appInfo": base["appInfo"],
            "log": base["log"],
            **{k: settings.get(k) for k in RESOURCE_FIELDS},
            "conf": settings.get("conf", {}),
            "heartbeatTimeoutInSecond": repl.heartbeat,
            "ttl": settings.get("ttl"),
            "idleTimeout": settings.get("idleTimeout"),
            "createdAt": base["createdAt"],
            "lastActivityAt": repl.last_activity,
            "finishedAt": base["finishedAt"],
            "expiresAt": base["expiresAt"] if not batch.active else self.expires_at(batch),
        }
