"""Adaptive polling, shared by the operator, the sensor and the trigger.

Most Spark jobs scheduled from Airflow either fail in their first seconds or run for minutes.
Polling quickly at first catches the early answer (and a short job's end) without delay; growing
the interval to `polling_interval` keeps a long job from hammering the server.
"""

from __future__ import annotations

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
