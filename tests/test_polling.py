"""The poll schedule shared by the operator and the trigger: long polls on our server, sleeps on Apache Livy."""

from __future__ import annotations

from airflow_provider_livy.polling import FIRST_INTERVAL, Poller
from airflow_provider_livy.protocol import MAX_STATE_WAIT


def test_first_poll_is_immediate_then_long_polls_grow_to_the_ceiling() -> None:
    poller = Poller(ceiling=2.0)
    assert poller.wait is None
    assert poller.pause_after("starting", took=0.01) == 0.0
    waits = [poller.wait]
    for _ in range(5):
        poller.pause_after("starting", took=poller.wait or 0.0)  # our server held each poll for the whole wait
        waits.append(poller.wait)
    assert waits[0] == FIRST_INTERVAL
    assert waits == sorted(waits) and waits[-1] == 2.0


def test_a_server_that_holds_the_poll_leaves_nothing_to_sleep() -> None:
    poller = Poller(ceiling=1.0)
    poller.pause_after("running", took=0.01)
    assert poller.pause_after("running", took=FIRST_INTERVAL + 0.003) == 0.0


def test_a_server_that_ignores_wait_gets_the_rest_of_the_interval_slept() -> None:
    """Apache Livy answers at once: the poller must not hammer it."""
    poller = Poller(ceiling=1.0)
    poller.pause_after("running", took=0.01)
    assert poller.pause_after("running", took=0.02) == FIRST_INTERVAL - 0.02


def test_after_a_change_the_next_poll_goes_at_once() -> None:
    poller = Poller(ceiling=1.0)
    poller.pause_after("starting", took=0.01)
    assert poller.pause_after("running", took=0.2) == 0.0


def test_wait_never_asks_more_than_the_protocol_allows() -> None:
    poller = Poller(ceiling=60.0)
    for _ in range(20):
        poller.pause_after("running", took=poller.wait or 0.0)
    assert poller.wait == MAX_STATE_WAIT
