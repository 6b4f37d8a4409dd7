"""Where batches and interactive sessions differ, one small object each; the lifecycle, the routes,
the UI (a session's statements) and the metrics (each family's own set) read a family's differences
from here and branch on nothing else.

Each builds on its protocol-level descriptor (protocol.BATCHES, protocol.SESSIONS: paths, words,
states), which the Airflow side and the maintenance sweep share without importing the server.
- batches: the request is the user's application; the driver is up once it says it runs (or names
  its application); it may succeed; livy.server.batch.ttl ends one that runs too long.
- interactive sessions: the driver is our REPL (interactive.py), up once it calls back; a driver
  ending on its own is the session's death, never a success; idle, ttl and heartbeat clocks end it.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from airflow_provider_livy.protocol import (
    BATCHES,
    RESOURCE_FIELDS,
    SESSIONS,
    SHUTTING_DOWN,
    Family,
    validate_batch_request,
    validate_session_request,
)
from airflow_provider_livy.server.sessions.contract import Lifecycle
from airflow_provider_livy.server.sessions.interactive import SHUTDOWN_WAIT, Interactive, SessionNotReady
from airflow_provider_livy.server.sessions.model import Repl, Session
from airflow_provider_livy.server.sessions.repl_client import ReplRefused, ReplUnreachable


class Batches:
    """A batch: the user's application through spark-submit."""

    protocol: Family = BATCHES
    log_subdir = ""  # its logs sit at the top of the log directory (as before sessions existed)
    can_succeed = True
    up_on_driver_start = True  # running once the driver says so; a session is up once its REPL calls back
    interactive: Interactive | None = None

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.config = lifecycle.config

    def new_tail(self) -> deque[str] | None:
        """An active batch's last log lines stay in memory (its view shows them at every poll)."""
        return deque(maxlen=self.config.cache_log_size)

    async def accept(self, body: Any, now: float) -> tuple[dict[str, Any], Repl | None]:
        return validate_batch_request(body), None

    def launch(self, session: Session, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The spark-submit request and the driver's extra environment."""
        return request, {}

    def restore(self, session: Session, data: dict[str, Any]) -> None:
        """What only this family keeps in a store record, back on a recovered session."""

    def live_deadline(self, session: Session) -> float | None:
        return session.created_at + self.config.batch_ttl if self.config.batch_ttl else None

    def overdue(self, session: Session, now: float) -> None:
        self.lifecycle.registry.counters["ttl_killed"] += 1
        self.lifecycle.end(session, f"killed after running longer than livy.server.batch.ttl ({self.config.batch_ttl:g}s)")

    def ends_at(self, session: Session) -> float | None:
        """When a clock will end an active session, for its view: a batch's ttl is not shown."""
        return None

    def resume(self, session: Session) -> None:
        """A driver watched (again): nothing more to follow for a batch."""

    def heartbeat(self, session: Session) -> None:
        """A client called on the session; batches keep no heartbeat clock."""

    async def stop_driver(self, session: Session, in_cluster: bool) -> float:
        """Ask the driver to stop by itself; the seconds to give its local process group before it is killed."""
        return 0.0

    def finished(self, session: Session) -> None:
        """The session reached its end."""

    def view(self, session: Session, base: dict[str, Any]) -> dict[str, Any]:
        return base

    async def newest_statements(self, session: Session, count: int) -> list[dict[str, Any]] | str | None:
        """None: a batch runs no statements, so its page shows none."""
        return None

    def metrics(self, waiting: int) -> Iterator[Metric]:
        """Batches keep their metric names: livy_sessions{state}, livy_sessions_held and _waiting, livy_batches_*."""
        registry = self.lifecycle.registry
        sessions = GaugeMetricFamily("livy_sessions", "Batch sessions held, by state", labels=["state"])
        for state, count in sorted(registry.state_counts.items()):
            sessions.add_metric([state], count)
        yield sessions
        yield GaugeMetricFamily("livy_sessions_held", "Batch sessions held in memory", value=len(registry))
        yield GaugeMetricFamily("livy_sessions_waiting", "Batches waiting for a creation slot", value=waiting)
        for name, help_text in (
            ("created", "Batches accepted"),
            ("deleted", "Batches deleted by a client"),
            ("collected", "Finished batches forgotten after state-retain"),
            ("evicted", "Finished batches forgotten early at max-sessions"),
            ("ttl_killed", "Batches killed for running past livy.server.batch.ttl"),
        ):
            yield CounterMetricFamily(f"livy_batches_{name}", help_text, value=registry.counters[name])

    async def close(self) -> None:
        """The server stops."""


class Sessions:
    """An interactive session: our REPL as the driver, statements through its channel."""

    protocol: Family = SESSIONS
    log_subdir = "interactive"
    can_succeed = False
    up_on_driver_start = False

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.config = lifecycle.config
        self.interactive = Interactive(lifecycle)

    def new_tail(self) -> deque[str] | None:
        """None: an idle session's view reads its last lines from disk, so memory per session stays small."""
        return None

    async def accept(self, body: Any, now: float) -> tuple[dict[str, Any], Repl | None]:
        request = validate_session_request(body)
        repl = await self.interactive.prepare(request, now)
        await self.interactive.warm()
        return request, repl

    def launch(self, session: Session, request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        return self.interactive.launch_request(session, request), self.interactive.channel_settings(session)

    def restore(self, session: Session, data: dict[str, Any]) -> None:
        session.repl = Repl.from_record(data, self.config.session_timeout, session.created_at)

    def live_deadline(self, session: Session) -> float | None:
        return self.interactive.deadline(session)

    def overdue(self, session: Session, now: float) -> None:
        self.interactive.overdue(session, now)

    def ends_at(self, session: Session) -> float | None:
        return None if session.repl is None else session.repl.ends_at(session.state, session.created_at)

    def resume(self, session: Session) -> None:
        self.interactive.status.follow(session)  # through the address its REPL called back with

    def heartbeat(self, session: Session) -> None:
        self.interactive.heartbeat(session)

    async def stop_driver(self, session: Session, in_cluster: bool) -> float:
        """The REPL stops Spark first: a local one gets SHUTDOWN_WAIT before its group is killed; one in a
        cluster (whose process cannot be watched) is waited for until it stops answering, at most that long,
        and the cluster's kill then makes sure nothing is left running."""
        if session.repl is None or not session.repl.address:
            return 0.0
        self.lifecycle.registry.set_state(session, SHUTTING_DOWN)
        await self.interactive.shutdown(session, wait=SHUTDOWN_WAIT if in_cluster else 0.0)
        return 0.0 if in_cluster else SHUTDOWN_WAIT

    def finished(self, session: Session) -> None:
        self.interactive.status.cancel(session)

    def view(self, session: Session, base: dict[str, Any]) -> dict[str, Any]:
        """Livy's session view: its keys, the resource fields echoed, then ours."""
        repl = session.repl
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
            "expiresAt": base["expiresAt"],
        }

    async def newest_statements(self, session: Session, count: int) -> list[dict[str, Any]] | str | None:
        """The session's newest statements (newest first) for its page, or why they cannot be read."""
        try:
            newest = {"from": 0, "size": count, "order": "desc"}
            raw = await self.interactive.call(session, "GET", "/statements", params=newest)
            return json.loads(raw)["statements"]
        except (SessionNotReady, ReplRefused, ReplUnreachable) as err:
            return f"Statements cannot be read: {err}"
        except (ValueError, KeyError, TypeError):
            return "Statements cannot be read: the session's driver answered something else than a statement list"

    def metrics(self, waiting: int) -> Iterator[Metric]:
        """livy_interactive_sessions{kind,state} and livy_interactive_*: held, counters, clock ends, statements."""
        registry = self.lifecycle.registry
        by_kind_state = GaugeMetricFamily(
            "livy_interactive_sessions", "Interactive sessions held, by kind and state", labels=["kind", "state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for session in registry.sessions.values():
            kind = session.repl.kind if session.repl is not None else "unknown"
            counts[kind, session.state] = counts.get((kind, session.state), 0) + 1
        for (kind, state), count in sorted(counts.items()):
            by_kind_state.add_metric([kind, state], count)
        yield by_kind_state
        yield GaugeMetricFamily("livy_interactive_sessions_held", "Interactive sessions held in memory", value=len(registry))
        for name, help_text in (
            ("created", "Interactive sessions accepted"),
            ("deleted", "Interactive sessions deleted by a client"),
            ("collected", "Ended interactive sessions forgotten after state-retain"),
            ("evicted", "Ended interactive sessions forgotten early at max-sessions"),
        ):
            yield CounterMetricFamily(f"livy_interactive_{name}", help_text, value=registry.counters[name])
        ended = CounterMetricFamily("livy_interactive_ended", "Sessions the server ended, by clock", labels=["reason"])
        for reason, count in sorted(self.interactive.ended.items()):
            ended.add_metric([reason], count)
        yield ended
        for name, help_text in (
            ("statements_run", "Statements that finished (ok or error)"),
            ("statements_failed", "Statements that finished with an error output"),
            ("statements_cancelled", "Statements cancelled"),
        ):
            yield CounterMetricFamily(f"livy_interactive_{name}", help_text, value=self.interactive.status.counters[name])

    async def close(self) -> None:
        await self.interactive.stop()


ServerFamily = Batches | Sessions
SERVER_FAMILIES: dict[str, type[Batches] | type[Sessions]] = {BATCHES.name: Batches, SESSIONS.name: Sessions}
