"""What the lifecycle offers the parts it coordinates (a family, the interactive side, the cluster hand-over).

A Protocol, so those parts call back into the lifecycle without importing it: the arrows run from
lifecycle.py down to them only.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.tracker import Tracker
from airflow_provider_livy.server.sessions.model import Session
from airflow_provider_livy.server.sessions.registry import Registry


class Lifecycle(Protocol):
    config: ServerConfig
    registry: Registry
    clock: Callable[[], float]
    tracker: Tracker | None  # deploy mode cluster: where new drivers go
    ui_host: str  # this server's host name, for driver UI links and the REPL's callback

    def mark_up(self, session: Session, state: str) -> None:
        """The driver is up (or moved between up states): its creation slot frees."""

    def finish(self, session: Session, state: str) -> None:
        """The session reached a terminal state."""

    def end(self, session: Session, line: str) -> None:
        """End an active session for a reason the server has, with a line in its log saying so."""

    def note(self, session: Session, line: str) -> None:
        """A line from the server in the session's log (and in the server's)."""

    def persist(self, session: Session) -> None:
        """Send the session's record to the store now."""

    def rearm(self, session: Session) -> None:
        """Its live deadline may have moved earlier: the collector must know."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run in the background, kept referenced until done."""
