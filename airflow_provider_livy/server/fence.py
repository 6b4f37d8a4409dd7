"""The fence: the condition every ZooKeeper write of the leader carries, so a leader that lost its place changes nothing.

A leader can be paused (a long GC, SIGSTOP, a partition) and wake after another server took
over, still believing it leads: nothing in the process can tell it in time. So the decision is
left to ZooKeeper. Each transaction the leader sends starts with `check` operations on the epoch
node (its version moves at every takeover) and on the leader's own election node (ephemeral: gone
when its ZooKeeper session ends). ZooKeeper applies a transaction whole or not at all, so a write
from a superseded leader fails there, however late it arrives.

`Leadership` arms the fence when it takes over and disarms it when it steps down; while the
ZooKeeper connection is suspended the fence is held: writes wait (the store keeps them as
unwritten) until leadership is confirmed again or lost. Stores call `guard` on each transaction
they build and `refusal` on each answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from kazoo.exceptions import BadVersionError, NoNodeError, RolledBackError
from kazoo.protocol.paths import normpath
from kazoo.protocol.serialization import CheckVersion

Check = tuple[str, int]  # (path, version) ZooKeeper must find unchanged for the write to apply


class FenceRefused(RuntimeError):
    """This server does not lead (or no longer does): the write was not made, and must not be retried."""


class FenceHeld(RuntimeError):
    """The ZooKeeper connection is suspended: whether this server still leads is not known yet."""


class Fence:
    """The checks a leader's writes carry, with a count of the writes refused."""

    def __init__(self) -> None:
        self._checks: tuple[Check, ...] = ()
        self._held = False
        self._lock = threading.Lock()
        self._refused = 0
        self._on_lost: list[Callable[[], None]] = []
        self._on_armed: list[Callable[[], None]] = []
        # The checks as sent, built once per arming: (chroot, checks) -> (wire checks, kazoo operations).
        self._wire: dict[tuple[str, tuple[Check, ...]], tuple[tuple[Check, ...], tuple[CheckVersion, ...]]] = {}

    # --- set by leadership ----------------------------------------------------------------
    def arm(self, checks: Sequence[Check]) -> None:
        """Writes may go, each carrying these checks: a takeover, or the same leadership confirmed after a suspension."""
        with self._lock:
            self._checks, self._held = tuple(checks), False
        for callback in self._on_armed:
            callback()

    def hold(self) -> None:
        self._held = True

    def disarm(self) -> None:
        with self._lock:
            self._checks, self._held = (), False

    # --- used by stores ---------------------------------------------------------------------
    def when_refused(self, callback: Callable[[], None]) -> None:
        """Called (from kazoo's thread) when ZooKeeper refused a write: another server leads now."""
        self._on_lost.append(callback)

    def when_armed(self, callback: Callable[[], None]) -> None:
        """Called when writes may go again (a takeover, a suspension that ended with the leadership kept)."""
        self._on_armed.append(callback)

    @property
    def armed(self) -> bool:
        return bool(self._checks) and not self._held

    @property
    def refused(self) -> int:
        """Writes refused, by the fence's local state or by ZooKeeper's check."""
        return self._refused

    def current(self) -> tuple[Check, ...]:
        """The checks for a transaction about to be built; raises when this server may not write now."""
        checks, held = self._checks, self._held
        if not checks:
            self._count()
            raise FenceRefused("this server does not lead; nothing was written")
        if held:
            raise FenceHeld("the ZooKeeper connection is suspended; the write waits until leadership is confirmed")
        return checks

    def on_wire(self, checks: tuple[Check, ...], chroot: str = "") -> tuple[tuple[Check, ...], tuple[CheckVersion, ...]]:
        """`checks` (from `current`) with the paths a client with this chroot sends, and as kazoo operations.

        Built once per arming and reused by every write: normalizing the paths and building the operations
        anew for each transaction was most of what the fence cost this process."""
        key = (chroot, checks)
        built = self._wire.get(key)
        if built is None:
            wire = tuple((normpath(chroot + path), version) for path, version in checks)
            built = (wire, tuple(CheckVersion(path, version) for path, version in wire))
            self._wire = {key: built}  # only the latest checks are kept: a new arming replaces them
        return built

    def guard(self, transaction: Any) -> int:
        """Put the checks at the head of a kazoo transaction (a fresh `TransactionRequest`); returns how many,
        for `refusal`."""
        checks = self.current()
        transaction.operations.extend(self.on_wire(checks, transaction.client.chroot)[1])
        return len(checks)

    def refusal(self, results: Sequence[Any], checks: int) -> FenceRefused | None:
        """The refusal, if ZooKeeper failed one of the transaction's first `checks` operations (the fence's)."""
        if not any(isinstance(r, BadVersionError | NoNodeError) for r in results[:checks]):
            return None
        self._count()
        for callback in self._on_lost:
            callback()
        return FenceRefused("another server leads now; ZooKeeper refused the write")

    def _count(self) -> None:
        with self._lock:
            self._refused += 1


def failures_of(results: Sequence[Any]) -> list[Exception]:
    """A transaction's real failures (kazoo reports the other operations as rolled back)."""
    return [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
