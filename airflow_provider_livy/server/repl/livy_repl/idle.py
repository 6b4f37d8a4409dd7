"""The idle exit: a driver that no authenticated request reached for LIVY_REPL_IDLE_TIMEOUT ends itself,
so a server that died for good leaves no driver behind. A request in flight counts as activity."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class IdleClock:
    """When the last authenticated request began or ended, and how many are in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last_request = time.monotonic()
        self.in_flight = 0

    def touch(self, started: bool) -> None:
        """An authenticated request begins or ends: the clock restarts."""
        with self.lock:
            self.in_flight += 1 if started else -1
            self.last_request = time.monotonic()

    def idle_for(self) -> float:
        with self.lock:
            return 0.0 if self.in_flight else time.monotonic() - self.last_request


def watch_idle(clock: IdleClock, timeout: float, stopping: Callable[[], bool], stop: Callable[[str], None]) -> None:
    """Ask for the stop when no authenticated request came for `timeout` seconds: no server wants this driver."""
    while not stopping():
        idle = clock.idle_for()
        if idle >= timeout:
            stop(f"no authenticated request for {timeout:g} s (LIVY_REPL_IDLE_TIMEOUT)")
            return
        time.sleep(min(1.0, max(0.05, timeout - idle)))
