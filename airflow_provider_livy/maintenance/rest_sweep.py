"""The REST sweep: delete finished sessions older than min_age through the server's own API, and
(when max_idle is set) interactive sessions idle for longer than that.

Everything is listed before anything is deleted: Livy pages by offset, so deleting while paging
would shift later sessions onto pages already read and skip them. Only terminal sessions, and
idle interactive sessions past max_idle, are ever deleted; a running batch or a busy session is
never touched, whatever its age. An idle session's state is asked again just before its delete,
so one that took a statement since the listing is left alone.

Idleness comes from the view's `lastActivityAt` (our server); a server without it (Apache Livy)
gets the time of the first sweep that saw the session idle, kept in the same record as the
terminal-since times (a session seen busy in between starts over).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.maintenance import terminal_since
from airflow_provider_livy.maintenance.report import SweepReport
from airflow_provider_livy.protocol import IDLE, TERMINAL_STATES, Family

KEPT_ACTIVE = "not finished"
KEPT_YOUNG = "finished less than min_age ago"
KEPT_GONE = "already gone when deleted"
KEPT_NO_ID = "view without an id"
KEPT_FAILED = "delete failed"
KEPT_BUSY_AGAIN = "idle past max_idle but took a statement since the listing"
IDLE_ALERT = 24 * 3600  # the check task alerts on sessions idle longer than a day


@dataclass(frozen=True)
class Listing:
    """One family of sessions as the sweep reaches it through the server's API: batches always,
    interactive sessions where the server has them (protocol.Family.optional)."""

    family: Family
    list: Callable[[], Iterable[Mapping[str, Any]]]
    delete: Callable[[int], bool]
    state: Callable[[int], str] | None = None  # interactive sessions: asked again before an idle one is ended

    @property
    def name(self) -> str:
        """The family's word: in report lines and in the terminal-since record's keys."""
        return self.family.word

    @property
    def optional(self) -> bool:
        return self.family.optional


@dataclass
class RestOutcome:
    report: SweepReport
    record: terminal_since.Record  # the next "first seen terminal" record
    held: int | None  # sessions the server holds after the sweep (None: could not list)


def age_of(
    view: Mapping[str, Any], kind: str, previous: terminal_since.Record, current: terminal_since.Record, now: float
) -> float:
    """Seconds since the session finished: from its own `finishedAt`, else since we first saw it terminal."""
    return _seconds_since(view, "finishedAt", terminal_since.key(kind, view["id"]), previous, current, now=now)


def idle_for(
    view: Mapping[str, Any], kind: str, previous: terminal_since.Record, current: terminal_since.Record, now: float
) -> float:
    """Seconds an idle session has been idle: from its own `lastActivityAt`, else since we first saw it idle."""
    return _seconds_since(view, "lastActivityAt", terminal_since.idle_key(kind, view["id"]), previous, current, now=now)


def _seconds_since(
    view: Mapping[str, Any],
    field: str,
    session_key: str,
    previous: terminal_since.Record,
    current: terminal_since.Record,
    *,
    now: float,
) -> float:
    """From the view's own timestamp (our server), else from the record of when a sweep first saw it so (Livy)."""
    stamp = view.get(field)
    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
        return now - stamp
    return now - terminal_since.first_seen(previous, current, session_key, terminal_since.fingerprint(view), now)


def sweep_rest(
    kinds: list[Listing],
    min_age: float,
    dry_run: bool = False,
    previous: terminal_since.Record | None = None,
    *,
    now: float | None = None,
    max_idle: float | None = None,
) -> RestOutcome:
    """List every kind, then delete its terminal sessions older than `min_age` and its interactive
    sessions idle longer than `max_idle` (None: never), or report them in a dry run."""
    now = time.time() if now is None else now
    previous = previous or {}
    report = SweepReport("rest", dry_run=dry_run)
    current: terminal_since.Record = {}
    outcome = RestOutcome(report, current, held=0)
    for kind in kinds:
        try:
            views = list(kind.list())
        except LivyError as err:
            current.update({k: v for k, v in previous.items() if k.startswith(f"{kind.name}:")})
            if kind.optional and err.status == 404:
                report.notes.append(f"the server has no interactive sessions API ({kind.name} listing answered 404)")
                continue
            report.error(f"listing {kind.family.plural} failed: {err}")
            outcome.held = None
            if err.status is None or err.status >= 500:
                break  # the server is not answering: do not wait for it once per kind
            continue
        ids = _sweep_kind(
            kind,
            views,
            min_age=min_age,
            max_idle=max_idle,
            dry_run=dry_run,
            previous=previous,
            current=current,
            now=now,
            report=report,
        )
        if outcome.held is not None:
            outcome.held += len(ids)
    report.extra["held_after"] = outcome.held
    report.extra.setdefault("sessions_by_kind", {})
    report.extra.setdefault("idle_ended", 0)
    report.extra.setdefault("idle_over_day", 0)
    report.extra["swept_at"] = now  # the "now" every age was measured against
    return outcome


def _sweep_kind(
    kind: Listing,
    views: list[Mapping[str, Any]],
    *,
    min_age: float,
    max_idle: float | None,
    dry_run: bool,
    previous: terminal_since.Record,
    current: terminal_since.Record,
    now: float,
    report: SweepReport,
) -> set[int]:
    """Sweep one kind; returns the ids the server still holds afterwards (in a dry run: would hold)."""
    held: set[int] = set()
    for view in views:
        report.scanned += 1
        session_id = view.get("id")
        if not isinstance(session_id, int):
            report.keep(KEPT_NO_ID)
            continue
        held.add(session_id)
        if kind.state is not None:
            by_kind = report.extra.setdefault("sessions_by_kind", {})
            by_kind[str(view.get("kind"))] = by_kind.get(str(view.get("kind")), 0) + 1
        if kind.state is not None and view.get("state") == IDLE:
            idle = idle_for(view, kind.name, previous, current, now)
            if max_idle is None or idle < max_idle:
                report.keep(KEPT_ACTIVE)
                if idle >= IDLE_ALERT:
                    report.extra["idle_over_day"] = report.extra.get("idle_over_day", 0) + 1
                continue
            if not dry_run and _state_now(kind, session_id, report) != IDLE:
                report.keep(KEPT_BUSY_AGAIN)
                continue
            report.extra["idle_ended"] = report.extra.get("idle_ended", 0) + 1
        elif view.get("state") not in TERMINAL_STATES:
            report.keep(KEPT_ACTIVE)
            continue
        elif age_of(view, kind.name, previous, current, now) < min_age:
            report.keep(KEPT_YOUNG)
            continue
        name = f"{kind.name}/{session_id}"
        if dry_run:
            report.deleted.append(name)
            held.discard(session_id)
            continue
        try:
            existed = kind.delete(session_id)
        except LivyError as err:
            report.keep(KEPT_FAILED)
            report.error(f"deleting {name} failed: {err}")
            continue
        held.discard(session_id)
        current.pop(terminal_since.key(kind.name, session_id), None)
        current.pop(terminal_since.idle_key(kind.name, session_id), None)
        if existed:
            report.deleted.append(name)
        else:
            report.keep(KEPT_GONE)
    return held


def _state_now(kind: Listing, session_id: int, report: SweepReport) -> str | None:
    """The session's state at this moment (None when it could not be asked: then it is not ended)."""
    assert kind.state is not None
    try:
        return kind.state(session_id)
    except LivyError as err:
        if err.status != 404:
            report.error(f"asking {kind.name}/{session_id}'s state failed: {err}")
        return None
