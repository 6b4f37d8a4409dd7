"""What keeps sign-in cheap and slow to guess: successful sign-ins remembered for a bounded time, failures
counted per client address.

A poller asks for its batch's state every few seconds; with either cache a repeated request costs a
dictionary lookup, not a bcrypt, an LDAP bind or a GSSAPI exchange.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict


class CredentialCache:
    """A digest of an Authorization header -> its user, for `ttl` seconds, at most `size` entries (oldest go
    first). Only the digest is kept: the cache holds no password."""

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    @staticmethod
    def key(header: bytes) -> bytes:
        return hashlib.sha256(header).digest()

    def get(self, key: bytes, now: float | None = None) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= (time.monotonic() if now is None else now):
            del self._entries[key]
            return None
        return entry[0]

    def put(self, key: bytes, user: str, now: float | None = None) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (user, (time.monotonic() if now is None else now) + self.ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


class FailureLimiter:
    """At most `limit` failed sign-ins per client address in a sliding `window`; past that the address waits.
    Bounded: at most `size` addresses are tracked (oldest go first)."""

    def __init__(self, limit: int, window: float, size: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.size = size
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(address, ()) if t > now - self.window]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def retry_after(self, address: str, now: float | None = None) -> float:
        """Seconds this address must wait before its next try; 0 if it may try now."""
        now = time.monotonic() if now is None else now
        times = self._recent(address, now) if address in self._failures else []
        if len(times) < self.limit:
            return 0.0
        return max(times[-self.limit] + self.window - now, 0.001)

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        times.append(now)
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self.size:
            self._failures.popitem(last=False)
