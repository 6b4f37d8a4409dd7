"""The session registry and its clock: what the server holds, and when it lets go.

One registry holds one family (batches, or interactive sessions: each has its own ids, as in
Livy). Every time is a wall-clock timestamp (seconds since the epoch), so it can be persisted and
a restart neither extends nor shortens a retention. Deadlines sit in heaps, so the collector's
work grows with the number of sessions expiring, never with the number held. An active session's
"live" deadline (a batch's ttl; a session's idle, ttl and heartbeat clocks) may move later: its
heap entry is checked against the current deadline when it comes due and re-armed if early.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_livy.protocol import ACTIVE_STATES, BATCH_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from airflow_provider_livy.server.sessions.interactive import Repl

# A function giving an active session's live deadline (epoch seconds), None for none.
LiveDeadline = Callable[["Batch"], float | None]


@dataclass(slots=True, eq=False)
class Batch:
    """One session, batch or interactive (then `repl` holds what only it has). Finished ones hold
    no log lines: those stay on disk."""

    id: int
    name: str | None
    owner: str | None
    proxy_user: str | None
    state: str
    created_at: float
    app_tag: str
    finished_at: float | None = None
    app_id: str | None = None
    ui_url: str | None = None
    pid: int | None = None  # the supervisor's pid, which is also the process group id
    pid_start: float | None = None  # its start time: a reused pid never passes for it
    log_offset: int = 0  # bytes of the log file already read
    log_lines: int = 0  # complete lines seen so far
    tail: deque[str] | None = None  # the last cache-log.size lines, while active
    child: bool = False  # the supervisor is our child, not yet reaped (not after a restart)
    request: dict[str, Any] | None = None  # set while waiting for a creation slot
    kill_requested: bool = False
    ui_probe_at: float = 0.0  # next time we may ask the driver UI for the app id
    cluster: dict[str, Any] | None = None  # deploy mode cluster: the tracker's coordinates (drivers.cluster)
    cluster_id: str | None = None  # the cluster's id for the driver, as spark-submit printed it
    driver_log_url: str | None = None
    clock_at: float | None = None  # when its earliest live-deadline heap entry comes due
    repl: Repl | None = None  # interactive sessions only

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    def record(self) -> dict[str, Any]:
        """What the state store keeps: Livy's fields first, then ours (see README)."""
        record = {
            "id": self.id,
            "name": self.name,
            "appId": self.app_id,
            "appTag": self.app_tag,
            "owner": self.owner,
            "proxyUser": self.proxy_user,
            "version": 1,
            "state": self.state,
            "createdAt": self.created_at,
            "finishedAt": self.finished_at,
            "sparkUiUrl": self.ui_url,
            "pid": self.pid,
            "pidStart": self.pid_start,
            "request": self.request,
        }
        if self.cluster is not None:  # the driver runs in a cluster: how to find it again
            record.update(cluster=self.cluster, clusterId=self.cluster_id, driverLogUrl=self.driver_log_url)
        if self.repl is not None:
            record.update(self.repl.record())
        return record


class Registry:
    """Batches by id and by name, the id counter, state counts and the expiry clock."""

    def __init__(
        self,
        retain: float,
        live_deadline: LiveDeadline,
        clock: Callable[[], float] = time.time,
        states: tuple[str, ...] = BATCH_STATES,  # the states the metrics list even at 0
    ) -> None:
        self.retain = retain
        self.live_deadline = live_deadline
        self.clock = clock
        self.batches: dict[int, Batch] = {}
        self.names: dict[str, int] = {}
        self.next_id = 0
        self.state_counts: Counter[str] = Counter({state: 0 for state in states})
        self.counters: Counter[str] = Counter({"created": 0, "deleted": 0, "collected": 0, "evicted": 0, "ttl_killed": 0})
        self._expiry: list[tuple[float, int]] = []  # (forget at, id) for finished batches
        self._live: list[tuple[float, int]] = []  # (end at, id) for active sessions with a live deadline
        self._changes: dict[int, asyncio.Event] = {}  # id -> set at its next state change (long polls)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def active_count(self) -> int:
        return sum(self.state_counts[s] for s in ACTIVE_STATES)

    def new_id(self) -> int:
        """Ids only ever grow, across restarts too (the counter is persisted)."""
        batch_id = self.next_id
        self.next_id += 1
        return batch_id

    def add(self, batch: Batch) -> None:
        self.batches[batch.id] = batch
        if batch.name:
            self.names[batch.name] = batch.id
        self.state_counts[batch.state] += 1
        self.next_id = max(self.next_id, batch.id + 1)
        if batch.state in TERMINAL_STATES:
            self._schedule_expiry(batch)
        else:
            self.arm(batch)

    def arm(self, batch: Batch) -> bool:
        """Put an active session's live deadline in the heap, unless an entry at least as early is there.
        True when the new entry is the earliest of all (the collector must wake up for it)."""
        at = self.live_deadline(batch)
        if at is None or (batch.clock_at is not None and batch.clock_at <= at):
            return False
        batch.clock_at = at
        heapq.heappush(self._live, (at, batch.id))
        return self._live[0][1] == batch.id

    def get(self, batch_id: int) -> Batch | None:
        return self.batches.get(batch_id)

    def lookup(self, key: str | int) -> Batch | None:
        """By id, or by name for a non-numeric key (as Livy does)."""
        if isinstance(key, int) or key.isdigit():
            try:
                return self.batches.get(int(key))
            except ValueError:
                return None
        batch_id = self.names.get(key)
        return None if batch_id is None else self.batches.get(batch_id)

    def page(self, start: int, size: int) -> list[Batch]:
        """Batches in id order; dicts keep insertion order and ids are inserted ascending."""
        return list(itertools.islice(self.batches.values(), start, start + size))

    def changed(self, batch_id: int) -> asyncio.Event:
        """Set at the batch's next state change or removal: what a long poll of its state waits on."""
        return self._changes.setdefault(batch_id, asyncio.Event())

    def _announce(self, batch_id: int) -> None:
        if (event := self._changes.pop(batch_id, None)) is not None:
            event.set()

    def set_state(self, batch: Batch, state: str) -> None:
        if state == batch.state:
            return
        self.state_counts[batch.state] -= 1
        self.state_counts[state] += 1
        batch.state = state
        self._announce(batch.id)
        if state in TERMINAL_STATES:
            batch.finished_at = self.clock()
            batch.tail = None
            batch.request = None  # only a queued batch needs it, to be launched after a restart
            self._schedule_expiry(batch)

    def _schedule_expiry(self, batch: Batch) -> None:
        heapq.heappush(self._expiry, ((batch.finished_at or batch.created_at) + self.retain, batch.id))

    def expires_at(self, batch: Batch) -> float | None:
        if batch.state not in TERMINAL_STATES:
            return None
        return (batch.finished_at or batch.created_at) + self.retain

    def remove(self, batch_id: int) -> Batch | None:
        batch = self.batches.pop(batch_id, None)
        if batch is None:
            return None
        if batch.name and self.names.get(batch.name) == batch_id:
            del self.names[batch.name]
        self.state_counts[batch.state] -= 1
        self._announce(batch_id)
        return batch

    def next_deadline(self) -> float | None:
        """The earliest moment the collector has something to do."""
        self._drop_stale()
        deadlines = [heap[0][0] for heap in (self._expiry, self._live) if heap]
        return min(deadlines) if deadlines else None

    def _drop_stale(self) -> None:
        """Heap entries of batches already gone (deleted, or no longer in that phase) are skipped lazily."""
        while self._expiry and not self._is_finished(self._expiry[0][1]):
            heapq.heappop(self._expiry)
        while self._live and not self._is_active(self._live[0][1]):
            heapq.heappop(self._live)

    def _is_finished(self, batch_id: int) -> bool:
        batch = self.batches.get(batch_id)
        return batch is not None and batch.state in TERMINAL_STATES

    def _is_active(self, batch_id: int) -> bool:
        batch = self.batches.get(batch_id)
        return batch is not None and batch.state in ACTIVE_STATES

    def pop_expired(self, now: float) -> Iterator[Batch]:
        """Finished batches whose retention is over, removed from the registry as they are yielded."""
        while self._expiry and self._expiry[0][0] <= now:
            _, batch_id = heapq.heappop(self._expiry)
            if self._is_finished(batch_id):
                batch = self.remove(batch_id)
                if batch is not None:
                    yield batch

    def pop_overdue(self, now: float) -> Iterator[Batch]:
        """Active sessions past their live deadline (they stay registered: the caller ends them).
        An entry that came due early (the deadline moved later, e.g. on activity) is re-armed."""
        while self._live and self._live[0][0] <= now:
            _, batch_id = heapq.heappop(self._live)
            batch = self.batches.get(batch_id)
            if batch is None or batch.state not in ACTIVE_STATES:
                continue
            batch.clock_at = None
            at = self.live_deadline(batch)
            if at is not None and at <= now:
                yield batch
            elif at is not None:
                batch.clock_at = at
                heapq.heappush(self._live, (at, batch_id))

    def oldest_finished(self) -> Batch | None:
        """The finished batch held longest (it expires first): what the UI points at when sessions pile up."""
        self._drop_stale()
        return self.batches[self._expiry[0][1]] if self._expiry else None

    def evict_oldest_finished(self) -> Batch | None:
        """Make room at max-sessions: the batch that finished first goes first."""
        self._drop_stale()
        if not self._expiry:
            return None
        _, batch_id = heapq.heappop(self._expiry)
        return self.remove(batch_id)
