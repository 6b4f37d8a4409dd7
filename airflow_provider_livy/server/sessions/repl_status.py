"""Following each interactive session's REPL driver through its /status: idle or busy, its last activity
(the idle clock) and its statement counts.

A busy session (or one just up) is long-polled until its driver says idle; then it rests, holding no
connection and no task, since only a statement sent through this server makes it busy again (the
statement call wakes its follower). A keep-alive pings each resting driver now and then: the driver
knows the server is there (else it exits), and the server learns whether it still is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from airflow_provider_livy.protocol import BUSY, IDLE
from airflow_provider_livy.server.sessions.contract import Lifecycle
from airflow_provider_livy.server.sessions.model import Repl, Session
from airflow_provider_livy.server.sessions.repl_client import ReplChannel, ReplRefused, ReplUnreachable

log = logging.getLogger(__name__)

STATUS_WAIT_MAX = 30.0  # one /status long poll; well under the driver's idle-exit clock
KEEPALIVE_MAX = 60.0  # seconds between keep-alive pings of a resting session's driver
KEEPALIVE_BATCH = 64  # pings in flight at once
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # after a failed /status


class StatusFollower:
    def __init__(self, service: Lifecycle, channel: Callable[[], ReplChannel]) -> None:
        self.service = service
        self.channel = channel  # the shared channel, made on first use
        idle_exit = service.config.repl_idle_timeout  # the driver exits after this long without hearing from us
        self.keepalive_interval = min(KEEPALIVE_MAX, max(1.0, idle_exit / 3))
        self.status_wait = min(STATUS_WAIT_MAX, max(1.0, idle_exit / 3))
        self.counters = {"statements_run": 0, "statements_failed": 0, "statements_cancelled": 0}
        self._keepalive: asyncio.Task[None] | None = None

    def follow(self, session: Session) -> None:
        repl = session.repl
        if repl is not None and repl.address and (repl.follower is None or repl.follower.done()):
            repl.follower = asyncio.create_task(self._follow(session))
        self._ensure_keepalive()

    async def _follow(self, session: Session) -> None:
        """/status long polls while the session is busy (or just came up); it rests once the driver says
        idle, since only a statement sent through this server makes it busy again (call() wakes it).
        An idle session thus holds no connection and no task: the keep-alive pings it now and then."""
        repl = session.repl
        assert repl is not None
        try:
            await self._follow_until_idle(session, repl)
        finally:
            if repl.follower is asyncio.current_task():
                repl.follower = None  # a resting session holds no task, not even a finished one

    async def _follow_until_idle(self, session: Session, repl: Repl) -> None:
        failures = 0
        while session.active and not session.kill_requested and repl.address:
            repl.poll_again = False
            wait = self.status_wait if session.state == BUSY else 0.0
            try:
                status = await self.channel().call_json(
                    repl.address,
                    repl.secret,
                    "GET",
                    "/status",
                    params={"wait": f"{wait:g}", "version": repl.version},
                    wait=wait,
                )
            except (ReplUnreachable, ReplRefused) as err:
                if failures == 0:
                    log.warning("session %s: %s", session.id, err)
                await asyncio.sleep(RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)])
                failures += 1
                continue
            failures = 0
            if isinstance(status, dict):
                self.apply(session, status)
            if session.state == IDLE and not repl.poll_again:
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
                s
                for s in list(self.service.registry.sessions.values())
                if s.repl is not None
                and s.repl.address
                and s.active
                and not s.kill_requested
                and (s.repl.follower is None or s.repl.follower.done())
            ]
            for start in range(0, len(resting), KEEPALIVE_BATCH):
                await asyncio.gather(*(self._ping(s) for s in resting[start : start + KEEPALIVE_BATCH]))

    async def _ping(self, session: Session) -> None:
        repl = session.repl
        assert repl is not None and repl.address
        try:
            status = await self.channel().call_json(repl.address, repl.secret, "GET", "/status")
        except (ReplUnreachable, ReplRefused) as err:
            log.warning("session %s: keep-alive: %s", session.id, err)
            return
        if isinstance(status, dict):
            self.apply(session, status)
            if session.state != IDLE:
                self.follow(session)

    def apply(self, session: Session, status: dict[str, Any]) -> None:
        """What one /status answer says: idle or busy (set up), the last activity (the idle clock), statement counts."""
        repl = session.repl
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
        if state in (IDLE, BUSY) and session.active and not session.kill_requested and state != session.state:
            self.service.mark_up(session, state)
        elif changed:
            self.service.rearm(session)


    async def refresh(self, session: Session) -> None:
        """One /status now (an idle clock ran out: a statement it runs, or finished just now, spares it)."""
        repl = session.repl
        assert repl is not None and repl.address
        with contextlib.suppress(ReplUnreachable, ReplRefused):
            status = await self.channel().call_json(repl.address, repl.secret, "GET", "/status")
            if isinstance(status, dict):
                self.apply(session, status)

    def cancel(self, session: Session) -> None:
        if session.repl is not None and session.repl.follower is not None:
            session.repl.follower.cancel()
            session.repl.follower = None

    def stop(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        for session in list(self.service.registry.sessions.values()):
            self.cancel(session)
