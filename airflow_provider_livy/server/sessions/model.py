"""What the server knows of one session, batch or interactive, and how it is written to the state store.

`Session` is the record every family shares; `Repl` is what only an interactive session has (its REPL
driver's channel and its clocks). Both turn into the store's record (`record`) and back
(`Session.from_record`, `Repl.from_record`): one place for the fields Livy and we write. Every time
is a wall-clock epoch timestamp, so a restart neither extends nor shortens a clock.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any

from airflow_provider_livy.protocol import ACTIVE_STATES, ALL_STATES, BUSY, DEAD, RESOURCE_FIELDS, STARTING, duration_seconds
from airflow_provider_livy.server.redaction import redact

START, IDLE_CLOCK, TTL, HEARTBEAT = "start", "idle", "ttl", "heartbeat"  # why the server ended a session
VIEW_SETTINGS = (*RESOURCE_FIELDS, "conf", "heartbeatTimeoutInSecond", "ttl", "idleTimeout")
STATE_NAMES = {state: state for state in ALL_STATES}  # one shared string per state, not one per record read


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
    follower: asyncio.Task[None] | None = None  # the /status long poll of a busy session
    poll_again: bool = False  # a statement went to the driver: its follower must look again before it rests
    ended_by: str | None = None

    @classmethod
    def new(cls, request: dict[str, Any], default_idle: float, now: float) -> Repl:
        """A new session's: idleTimeout, else livy.server.session.timeout (`default_idle`)."""
        idle = duration_seconds(request["idleTimeout"]) if "idleTimeout" in request else None
        ttl = duration_seconds(request["ttl"]) if "ttl" in request else None
        settings = {k: request[k] for k in VIEW_SETTINGS if k in request}
        if "conf" in settings:  # the view and the record echo it: credentials stay with the launch only
            settings["conf"] = redact(settings["conf"])
        return cls(
            kind=request["kind"],
            secret=secrets.token_urlsafe(32),
            settings=settings,
            idle_timeout=idle or default_idle,
            ttl=ttl or None,
            heartbeat=request.get("heartbeatTimeoutInSecond", 0),
            last_activity=now,
            last_heartbeat=now,
            heartbeat_saved=now,
        )

    @classmethod
    def from_record(cls, data: dict[str, Any], default_idle: float, created_at: float) -> Repl:
        """A session's Repl back from its store record (recovery)."""
        settings = {k: data[k] for k in VIEW_SETTINGS if data.get(k) is not None}
        if data.get("heartbeatTimeoutS"):
            settings["heartbeatTimeoutInSecond"] = data["heartbeatTimeoutS"]
        repl = cls.new({"kind": data.get("kind") or "pyspark", **settings}, default_idle, created_at)
        repl.secret = data.get("replSecret") or ""
        repl.address = data.get("replAddress")
        repl.last_activity = data.get("lastActivityAt") or created_at
        repl.last_heartbeat = repl.heartbeat_saved = data.get("lastHeartbeatAt") or created_at
        return repl

    def deadline(self, state: str, created_at: float, start_timeout: float) -> tuple[float, str] | None:
        """The earliest clock that will end the session, and which. Idleness never ends a busy one, and
        counts only once the driver is up: a start is bounded by livy.server.session.timeout instead."""
        clocks = []
        if state == STARTING:
            clocks.append((created_at + start_timeout, START))
        elif state != BUSY:
            clocks.append((self.last_activity + self.idle_timeout, IDLE_CLOCK))
        if self.ttl:
            clocks.append((created_at + self.ttl, TTL))
        if self.heartbeat:
            clocks.append((self.last_heartbeat + self.heartbeat, HEARTBEAT))
        return min(clocks) if clocks else None

    def ends_at(self, state: str, created_at: float) -> float | None:
        """For the view: when idleness or ttl will end an active session (None while busy without ttl)."""
        clocks = [created_at + self.ttl] if self.ttl else []
        if state != BUSY:
            clocks.append(self.last_activity + self.idle_timeout)
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


@dataclass(slots=True, eq=False)
class Session:
    """One session, batch or interactive (then `repl` holds what only it has). Finished ones hold
    no log lines: those stay on disk."""

    id: int
    name: str | None
    owner: str | None
    proxy_user: str | None
    state: str
    created_at: float
    app_tag: str
    finished_at: float | None = None
    app_id: str | None = None
    ui_url: str | None = None
    pid: int | None = None  # the supervisor's pid, which is also the process group id
    pid_start: float | None = None  # its start time: a reused pid never passes for it
    log_offset: int = 0  # bytes of the log file already read
    log_lines: int = 0  # complete lines seen so far
    tail: deque[str] | None = None  # the last cache-log.size lines, while active
    child: bool = False  # the supervisor is our child, not yet reaped (not after a restart)
    request: dict[str, Any] | None = None  # set while waiting for a creation slot
    kill_requested: bool = False
    ui_probe_at: float = 0.0  # next time we may ask the driver UI for the app id
    cluster: dict[str, Any] | None = None  # deploy mode cluster: the tracker's coordinates (drivers.cluster)
    cluster_id: str | None = None  # the cluster's id for the driver, as spark-submit printed it
    driver_log_url: str | None = None
    clock_at: float | None = None  # when its earliest live-deadline heap entry comes due
    repl: Repl | None = None  # interactive sessions only

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def record(self) -> dict[str, Any]:
        """What the state store keeps: Livy's fields first, then ours (see README)."""
        record = {
            "id": self.id,
            "name": self.name,
            "appId": self.app_id,
            "appTag": self.app_tag,
            "owner": self.owner,
            "proxyUser": self.proxy_user,
            "version": 1,
            "state": self.state,
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
            "sparkUiUrl": self.ui_url,
            "pid": self.pid,
            "pidStart": self.pid_start,
            "request": self.request,
        }
        if self.cluster is not None:  # the driver runs in a cluster: how to find it again
            record.update(cluster=self.cluster, clusterId=self.cluster_id, driverLogUrl=self.driver_log_url)
        if self.repl is not None:
            record.update(self.repl.record())
        return record

    @classmethod
    def from_record(cls, data: dict[str, Any], mtime: float) -> Session:
        """Our record as it was written; a Livy record (no createdAt) as a dead session that finished
        when it was last written. A parsed record (recovery.parse_record) is assumed."""
        ours = "createdAt" in data
        session_id = data["id"]
        return cls(
            id=session_id,
            name=data.get("name"),
            owner=data.get("owner"),
            proxy_user=data.get("proxyUser"),
            state=STATE_NAMES[data["state"]] if ours else DEAD,
            created_at=data["createdAt"] if ours else mtime,
            app_tag=data.get("appTag") or f"livy-batch-{session_id}",
            finished_at=data.get("finishedAt") if ours else mtime,
            app_id=data.get("appId"),
            ui_url=data.get("sparkUiUrl"),
            pid=data.get("pid"),
            pid_start=data.get("pidStart"),
            request=data.get("request"),
            cluster=data.get("cluster"),
            cluster_id=data.get("clusterId"),
            driver_log_url=data.get("driverLogUrl"),
        )
