"""The session registry and its clock: what the server holds, and when it lets go.

One registry holds one family (batches, or interactive sessions: each has its own ids, as in
Livy). Every time is a wall-clock timestamp (seconds since the epoch), so it can be persisted and
a restart neither extends nor shortens a retention. Deadlines sit in heaps, so the collector's
work grows with the number of sessions expiring, never with the number held. An active session's
"live" deadline (a batch's ttl; an interactive session's idle, ttl and heartbeat clocks) may move later: its
heap entry is checked against the current deadline when it comes due and re-armed if early.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterator

from airflow_provider_livy.protocol import ACTIVE_STATES, TERMINAL_STATES
from airflow_provider_livy.server.sessions.model import Session

# A function giving an active session's live deadline (epoch seconds), None for none.
LiveDeadline = Callable[[Session], float | None]


class Registry:
    """Sessions by id and by name, the id counter, state counts and the expiry clock."""

    def __init__(
        self,
        retain: float,
        live_deadline: LiveDeadline,
        clock: Callable[[], float],
        states: tuple[str, ...],  # the states the metrics list even at 0
    ) -> None:
        self.retain = retain
        self.live_deadline = live_deadline
        self.clock = clock
        self.sessions: dict[int, Session] = {}
        self.names: dict[str, int] = {}
        self.next_id = 0
        self.state_counts: Counter[str] = Counter({state: 0 for state in states})
        self.counters: Counter[str] = Counter({"created": 0, "deleted": 0, "collected": 0, "evicted": 0, "ttl_killed": 0})
        self._expiry: list[tuple[float, int]] = []  # (forget at, id) for finished sessions
        self._live: list[tuple[float, int]] = []  # (end at, id) for active sessions with a live deadline
        self._changes: dict[int, asyncio.Event] = {}  # id -> set at its next state change (long polls)

    def __len__(self) -> int:
        return len(self.sessions)

    def new_id(self) -> int:
        """Ids only ever grow, across restarts too (the counter is persisted)."""
        session_id = self.next_id
        self.next_id += 1
        return session_id

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session
        if session.name:
            self.names[session.name] = session.id
        self.state_counts[session.state] += 1
        self.next_id = max(self.next_id, session.id + 1)
        if session.state in TERMINAL_STATES:
            self._schedule_expiry(session)
        else:
            self.arm(session)

    def arm(self, session: Session) -> bool:
        """Put an active session's live deadline in the heap, unless an entry at least as early is there.
        True when the new entry is the earliest of all (the collector must wake up for it)."""
        at = self.live_deadline(session)
        if at is None or (session.clock_at is not None and session.clock_at <= at):
            return False
        session.clock_at = at
        heapq.heappush(self._live, (at, session.id))
        return self._live[0][1] == session.id

    def get(self, session_id: int) -> Session | None:
        return self.sessions.get(session_id)

    def lookup(self, key: str | int) -> Session | None:
        """By id, or by name for a non-numeric key (as Livy does)."""
        if isinstance(key, int) or key.isdigit():
            try:
                return self.sessions.get(int(key))
            except ValueError:
                return None
        session_id = self.names.get(key)
        return None if session_id is None else self.sessions.get(session_id)

    def page(self, start: int, size: int) -> list[Session]:
        """Sessions in id order; dicts keep insertion order and ids are inserted ascending."""
        return list(itertools.islice(self.sessions.values(), start, start + size))

    def changed(self, session_id: int) -> asyncio.Event:
        """Set at the session's next state change or removal: what a long poll of its state waits on."""
        return self._changes.setdefault(session_id, asyncio.Event())

    def _announce(self, session_id: int) -> None:
        if (event := self._changes.pop(session_id, None)) is not None:
            event.set()

    def set_state(self, session: Session, state: str) -> None:
        if state == session.state:
            return
        self.state_counts[session.state] -= 1
        self.state_counts[state] += 1
        session.state = state
        self._announce(session.id)
        if state in TERMINAL_STATES:
            session.finished_at = self.clock()
            session.tail = None
            session.request = None  # only a queued session needs it, to be launched after a restart
            self._schedule_expiry(session)

    def _schedule_expiry(self, session: Session) -> None:
        heapq.heappush(self._expiry, ((session.finished_at or session.created_at) + self.retain, session.id))

    def expires_at(self, session: Session) -> float | None:
        if session.state not in TERMINAL_STATES:
            return None
        return (session.finished_at or session.created_at) + self.retain

    def remove(self, session_id: int) -> Session | None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return None
        if session.name and self.names.get(session.name) == session_id:
            del self.names[session.name]
        self.state_counts[session.state] -= 1
        self._announce(session_id)
        return session

    def next_deadline(self) -> float | None:
        """The earliest moment the collector has something to do."""
        self._drop_stale()
        deadlines = [heap[0][0] for heap in (self._expiry, self._live) if heap]
        return min(deadlines) if deadlines else None

    def _drop_stale(self) -> None:
        """Heap entries of sessions already gone (deleted, or no longer in that phase) are skipped lazily."""
        while self._expiry and not self._is_finished(self._expiry[0][1]):
            heapq.heappop(self._expiry)
        while self._live and not self._is_active(self._live[0][1]):
            heapq.heappop(self._live)

    def _is_finished(self, session_id: int) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and session.state in TERMINAL_STATES

    def _is_active(self, session_id: int) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and session.state in ACTIVE_STATES

    def pop_expired(self, now: float) -> Iterator[Session]:
        """Finished sessions whose retention is over, removed from the registry as they are yielded."""
        while self._expiry and self._expiry[0][0] <= now:
            _, session_id = heapq.heappop(self._expiry)
            if self._is_finished(session_id):
                session = self.remove(session_id)
                if session is not None:
                    yield session

    def pop_overdue(self, now: float) -> Iterator[Session]:
        """Active sessions past their live deadline (they stay registered: the caller ends them).
        An entry that came due early (the deadline moved later, e.g. on activity) is re-armed."""
        while self._live and self._live[0][0] <= now:
            _, session_id = heapq.heappop(self._live)
            session = self.sessions.get(session_id)
            if session is None or session.state not in ACTIVE_STATES:
                continue
            session.clock_at = None
            at = self.live_deadline(session)
            if at is not None and at <= now:
                yield session
            elif at is not None:
                session.clock_at = at
                heapq.heappush(self._live, (at, session_id))

    def oldest_finished(self) -> Session | None:
        """The finished session held longest (it expires first): what the UI points at when sessions pile up."""
        self._drop_stale()
        return self.sessions[self._expiry[0][1]] if self._expiry else None

    def evict_oldest_finished(self) -> Session | None:
        """Make room at max-sessions: the session that finished first goes first."""
        self._drop_stale()
        if not self._expiry:
            return None
        _, session_id = heapq.heappop(self._expiry)
        return self.remove(session_id)
