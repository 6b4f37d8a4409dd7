"""Adaptive long polling, shared by the operator and the trigger.

Most Spark jobs scheduled from Airflow either fail in their first seconds or run for minutes.
Polling quickly at first catches the early answer (and a short job's end) without delay; growing
the interval to `polling_interval` keeps a long job from hammering the server.

Each poll after the first asks the server to hold its answer for up to the interval until the
state changes (protocol.STATE_WAIT_PARAM): our server answers the moment a job ends, so the end is
noticed at once, not up to an interval late. A server that ignores the parameter (Apache Livy)
answers at once; the poller then sleeps the rest of the interval itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_livy.protocol import MAX_STATE_WAIT

FIRST_INTERVAL = 0.5
GROWTH = 1.5


def next_interval(previous: float | None, ceiling: float) -> float:
    """The wait before the next poll: FIRST_INTERVAL, then 1.5 times longer each time, up to `ceiling`."""
    if previous is None:
        return min(FIRST_INTERVAL, ceiling)
    return min(previous * GROWTH, ceiling)


# Driver log lines are fetched at most this often while a job runs (and always once at its end):
# a state poll is the cheap call, a log page is not, and a few seconds of log latency is fine.
LOG_INTERVAL = 5.0


def state_wait(interval: float) -> float:
    """The `wait` to ask of the server for a poll that should come `interval` after the last."""
    return min(interval, MAX_STATE_WAIT)


def rest_of_interval(interval: float, wait: float, took: float, changed: bool) -> float:
    """What to sleep after a poll that asked the server to wait `wait` seconds and took `took`.

    Nothing after a change (a batch changes state a few times at most) or after a poll the server
    held for the whole wait: the next long poll costs it nothing while it waits. A poll answered early
    without a change came from a server that ignores `wait`: sleep the rest of the interval.
    """
    return 0.0 if changed or took >= wait else max(0.0, interval - took)


@dataclass
class Poller:
    """One batch's poll schedule: the `wait` to ask of the next state poll, the pause after each answer."""

    ceiling: float  # the operator's polling_interval
    wait: float | None = None  # None: the first poll, answered at once
    interval: float | None = None
    previous: str | None = None

    def pause_after(self, state: str, took: float) -> float:
        pause = 0.0
        if self.interval is not None and self.wait is not None:
            pause = rest_of_interval(self.interval, self.wait, took, changed=state != self.previous)
        self.previous, self.interval = state, next_interval(self.interval, self.ceiling)
        self.wait = state_wait(self.interval)
        return pause
