"""Waiting for a batch to end, a session to come up and a statement to finish, written once for both hooks.

The waits are generators that say what to do next (`Poll(wait)`: ask the server, holding the answer
up to `wait` s; `Sleep(s)`; `ReadLog()`: fetch new driver log lines; `Cancel()`: cancel what timed
out) and are sent the answers. `drive` runs one with blocking calls, `adrive` with awaits: the
operators, the hooks and the triggers share the one decision logic (adaptive long polling from
`polling`, deadlines, when to read logs, progress callbacks) and only do the I/O their way.

A statement past its timeout is cancelled (`statement_done` says so, whichever hook drives it), then
WaitTimeout is raised: its owner ends the session, the operator on a worker as the trigger when deferred.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.polling import LOG_INTERVAL, Poller
from airflow_provider_livy.protocol import (
    NOT_STARTED,
    RECOVERING,
    STARTING,
    STATEMENT_DONE_STATES,
    TERMINAL_STATES,
    Statement,
)

# A session in these states is on its way up; any other state is an answer (idle, busy, or an end).
COMING_UP = frozenset({NOT_STARTED, STARTING, RECOVERING})


@dataclass(frozen=True)
class Poll:
    wait: float | None  # None: answer at once


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class ReadLog:
    """Fetch the driver log lines since the last read."""


@dataclass(frozen=True)
class Cancel:
    """Cancel the statement waited for: it ran past its timeout."""


Step = Poll | Sleep | ReadLog | Cancel
Waiter = Generator[Step, Any, Any]


class WaitTimeout(LivyError):
    """A wait ran past its timeout; what was waited for is still going on (`state`, as last seen)."""

    def __init__(self, message: str, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _clip(wait: float | None, deadline: float | None) -> float | None:
    left = _left(deadline)
    return wait if left is None or wait is None else max(0.0, min(wait, left))


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def batch_done(batch_id: int, polling_interval: float, timeout: float | None = None, stream_logs: bool = True) -> Waiter:
    """Poll a batch's state until it has ended; returns that state. Driver log lines are read at most
    every LOG_INTERVAL while it runs and once at its end. WaitTimeout at `timeout`."""
    poller = Poller(polling_interval)
    deadline = _deadline(timeout)
    logs_read: float | None = None
    while True:
        asked = time.monotonic()
        state = yield Poll(_clip(poller.wait, deadline))
        took = time.monotonic() - asked
        if stream_logs and (state in TERMINAL_STATES or logs_read is None or time.monotonic() - logs_read >= LOG_INTERVAL):
            yield ReadLog()
            logs_read = time.monotonic()
        if state in TERMINAL_STATES:
            return state
        left = _left(deadline)
        if left is not None and left <= 0:
            raise WaitTimeout(f"batch {batch_id} still {state} at the deadline", state)
        pause = _clip(poller.pause_after(state, took), deadline)
        if pause:
            yield Sleep(pause)


def session_up(session_id: int, polling_interval: float, timeout: float | None = None) -> Waiter:
    """Poll a session's state until it has left not_started/starting/recovering; returns that state."""
    poller = Poller(polling_interval)
    deadline = _deadline(timeout)
    while True:
        asked = time.monotonic()
        state = yield Poll(_clip(poller.wait, deadline))
        if state not in COMING_UP:
            return state
        left = _left(deadline)
        if left is not None and left <= 0:
            raise WaitTimeout(f"session {session_id} still {state} after {timeout:g}s", state)
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
    """Poll a statement until it is available or cancelled; returns it. At `timeout` cancel it, then WaitTimeout."""
    poller = Poller(polling_interval)
    deadline = _deadline(timeout)
    while statement["state"] not in STATEMENT_DONE_STATES:
        left = _left(deadline)
        if left is not None and left <= 0:
            yield Cancel()
            what = f"statement {statement['id']} of session {session_id}"
            raise WaitTimeout(f"{what} still {statement['state']} after {timeout:g}s", statement["state"])
        asked = time.monotonic()
        statement = yield Poll(_clip(poller.wait, deadline))
        if on_progress is not None:
            on_progress(statement)
        pause = _clip(poller.pause_after(statement["state"], time.monotonic() - asked), deadline)
        if pause and statement["state"] not in STATEMENT_DONE_STATES:
            yield Sleep(pause)
    return statement


def _nothing() -> None:
    return None


async def _anothing() -> None:
    return None


def drive(
    waiter: Waiter,
    poll: Callable[[float | None], Any],
    sleep: Callable[[float], None] = time.sleep,
    *,
    read_log: Callable[[], Any] = _nothing,
    cancel: Callable[[], Any] = _nothing,
) -> Any:
    """Run a wait with blocking calls: `poll(wait)` answers a Poll, `read_log()` a ReadLog, `cancel()` a Cancel."""
    answer = None
    try:
        while True:
            step = waiter.send(answer)
            if isinstance(step, Poll):
                answer = poll(step.wait)
            elif isinstance(step, Sleep):
                answer = sleep(step.seconds)
            else:
                answer = read_log() if isinstance(step, ReadLog) else cancel()
    except StopIteration as done:
        return done.value


async def adrive(
    waiter: Waiter,
    poll: Callable[[float | None], Awaitable[Any]],
    *,
    read_log: Callable[[], Awaitable[Any]] = _anothing,
    cancel: Callable[[], Awaitable[Any]] = _anothing,
) -> Any:
    """Run a wait with awaits: the same decisions as `drive`."""
    answer = None
    try:
        while True:
            step = waiter.send(answer)
            if isinstance(step, Poll):
                answer = await poll(step.wait)
            elif isinstance(step, Sleep):
                answer = await asyncio.sleep(step.seconds)
            else:
                answer = await (read_log() if isinstance(step, ReadLog) else cancel())
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
