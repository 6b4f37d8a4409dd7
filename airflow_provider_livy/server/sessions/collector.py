"""The collector: one task per family that sleeps until the registry's next deadline, then forgets the
finished sessions whose retention is over and hands the active ones whose clock ran out to their family
(a batch's ttl; an interactive session's start, idle, ttl and heartbeat clocks: families.py).

It wakes early when a deadline may have moved earlier (a new session, a session gone idle, one that
ended); a deadline that moved later is found out when its heap entry comes due (registry.py). While
`may_act` says no (a group's leader that cannot confirm its lead, recovery mode ha), the clocks wait,
looked at again every HELD_RECHECK; once it may act again, `resume` launches what waited meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.sessions.registry import Registry

log = logging.getLogger(__name__)

HELD_RECHECK = 0.2  # seconds


class Collector:
    def __init__(
        self,
        registry: Registry,
        clock: Callable[[], float],
        forget: Callable[[list[Session]], None],
        overdue: Callable[[Session, float], None],
        *,
        may_act: Callable[[], bool] = lambda: True,
        resume: Callable[[], None] = lambda: None,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.forget = forget
        self.overdue = overdue
        self.may_act = may_act
        self.resume = resume
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def rearm(self, session: Session) -> None:
        """A live deadline may have moved earlier (a session went idle): wake for it if it is the next."""
        if self.registry.arm(session):
            self._wake.set()

    async def run(self) -> None:
        held = False
        while True:
            deadline = self.registry.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if not self.may_act():
                held = True
                await asyncio.sleep(HELD_RECHECK)
                self._wake.set()  # look again: once the lead is confirmed, the clocks and the queue go on
                continue
            try:
                self.collect_due()
                if held:
                    held = False
                    self.resume()
            except Exception:
                log.exception("collector round failed")

    def collect_due(self) -> None:
        """Forget the sessions whose retention is over; end the active ones whose clock ran out."""
        now = self.clock()
        expired = list(self.registry.pop_expired(now))
        if expired:
            self.registry.counters["collected"] += len(expired)
            self.forget(expired)
        for session in list(self.registry.pop_overdue(now)):
            self.overdue(session, now)
