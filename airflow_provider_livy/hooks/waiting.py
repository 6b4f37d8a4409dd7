"""Waiting for a session to come up and for a statement to finish, written once for both hooks.

The waits are generators that say what to do next (`Poll(wait)`: ask the server, holding the answer
up to `wait` s; `Sleep(s)`) and are sent the answers. `drive` runs one with blocking calls,
`adrive` with awaits: the sync hook, the async hook and the trigger share the one decision logic
(adaptive long polling from `polling`, deadlines, progress callbacks) and only do the I/O their way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.polling import LOG_INTERVAL, Poller
from airflow_provider_livy.protocol import NOT_STARTED, RECOVERING, STARTING, STATEMENT_DONE_STATES, Statement

# A session in these states is on its way up; any other state is an answer (idle, busy, or an end).
COMING_UP = frozenset({NOT_STARTED, STARTING, RECOVERING})


@dataclass(frozen=True)
class Poll:
    wait: float | None  # None: answer at once


@dataclass(frozen=True)
class Sleep:
    seconds: float


Waiter = Generator[Poll | Sleep, Any, Any]


class WaitTimeout(LivyError):
    """A wait ran past its timeout; what was waited for is still going on."""


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _clip(wait: float | None, deadline: float | None) -> float | None:
    left = _left(deadline)
    return wait if left is None or wait is None else max(0.0, min(wait, left))


def session_up(session_id: int, polling_interval: float, timeout: float | None = None) -> Waiter:
    """Poll a session's state until it has left not_started/starting/recovering; returns that state."""
    poller = Poller(polling_interval)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        asked = time.monotonic()
        state = yield Poll(_clip(poller.wait, deadline))
        if state not in COMING_UP:
            return state
        left = _left(deadline)
        if left is not None and left <= 0:
            raise WaitTimeout(f"session {session_id} still {state} after {timeout:g}s")
        pause = _clip(poller.pause_after(state, time.monotonic() - asked), deadline)
        if pause:
            yield Sleep(pause)


def statement_done(
    session_id: int,
    statement: Statement,
    polling_interval: float,
    timeout: float | None = None,
    on_progress: Callable[[Statement], None] | None = None,
) -> Waiter:
    """Poll a statement until it is available or cancelled; returns it. WaitTimeout at `timeout`."""
    poller = Poller(polling_interval)
    deadline = None if timeout is None else time.monotonic() + timeout
    while statement["state"] not in STATEMENT_DONE_STATES:
        left = _left(deadline)
        if left is not None and left <= 0:
            what = f"statement {statement['id']} of session {session_id}"
            raise WaitTimeout(f"{what} still {statement['state']} after {timeout:g}s")
        asked = time.monotonic()
        statement = yield Poll(_clip(poller.wait, deadline))
        if on_progress is not None:
            on_progress(statement)
        pause = _clip(poller.pause_after(statement["state"], time.monotonic() - asked), deadline)
        if pause and statement["state"] not in STATEMENT_DONE_STATES:
            yield Sleep(pause)
    return statement


def drive(waiter: Waiter, poll: Callable[[float | None], Any], sleep: Callable[[float], None] = time.sleep) -> Any:
    """Run a wait with blocking calls: `poll(wait)` answers a Poll."""
    answer = None
    try:
        while True:
            step = waiter.send(answer)
            if isinstance(step, Sleep):
                sleep(step.seconds)
                answer = None
            else:
                answer = poll(step.wait)
    except StopIteration as done:
        return done.value


async def adrive(waiter: Waiter, poll: Callable[[float | None], Awaitable[Any]]) -> Any:
    """Run a wait with awaits: the same decisions as `drive`."""
    answer = None
    try:
        while True:
            step = waiter.send(answer)
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                answer = None
            else:
                answer = await poll(step.wait)
    except StopIteration as done:
        return done.value


@dataclass
class ProgressLog:
    """An `on_progress` callback that logs a running statement's progress every LOG_INTERVAL, from
    LOG_INTERVAL after it was made (a quick statement logs none)."""

    log: Any  # a logger
    session_id: int
    index: int
    logged: float = field(default_factory=time.monotonic)
    last: float | None = None

    def __call__(self, statement: Statement) -> None:
        progress = statement.get("progress")
        if statement["state"] in STATEMENT_DONE_STATES or not isinstance(progress, (int, float)) or progress == self.last:
            return
        if time.monotonic() - self.logged >= LOG_INTERVAL:
            self.log.info(
                "[livy session %s] statement %d (id %s) %s: %.0f%% done",
                self.session_id,
                self.index,
                statement["id"],
                statement["state"],
                progress * 100,
            )
            self.logged, self.last = time.monotonic(), progress
