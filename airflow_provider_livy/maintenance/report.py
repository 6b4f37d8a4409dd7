"""What a sweep did, as plain counts: for the task log, for XCom, and for the final verdict."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# XCom rows live in Airflow's database: a sweep of 40,000 records reports counts and a sample of names.
SAMPLE_SIZE = 200


@dataclass
class SweepReport:
    """One sweep's outcome. In a dry run `deleted` holds what would have been deleted."""

    sweep: str
    dry_run: bool = False
    scanned: int = 0
    deleted: list[str] = field(default_factory=list)
    kept: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None  # why the sweep did not run at all
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def keep(self, reason: str, count: int = 1) -> None:
        if count:
            self.kept[reason] += count

    def error(self, message: str) -> None:
        self.errors.append(message)

    def as_dict(self) -> dict[str, Any]:
        """The XCom value: JSON-friendly and bounded in size."""
        return {
            "sweep": self.sweep,
            "dry_run": self.dry_run,
            "skipped": self.skipped,
            "scanned": self.scanned,
            "deleted": len(self.deleted),
            "deleted_sample": sorted(self.deleted, key=_natural)[:SAMPLE_SIZE],
            "kept": dict(sorted(self.kept.items())),
            "kept_total": sum(self.kept.values()),
            "errors": len(self.errors),
            "error_messages": self.errors[:20],
            "notes": self.notes,
            **self.extra,
        }

    def summary(self) -> str:
        """One line for the task log."""
        if self.skipped:
            return f"{self.sweep} sweep skipped: {self.skipped}"
        verb = "would delete" if self.dry_run else "deleted"
        kept = ", ".join(f"{count} {reason}" for reason, count in sorted(self.kept.items())) or "none"
        text = f"{self.sweep} sweep: scanned {self.scanned}, {verb} {len(self.deleted)}, kept {sum(self.kept.values())} ({kept})"
        return text + f", {len(self.errors)} error(s)" + (f": {'; '.join(self.errors[:3])}" if self.errors else "")


def _natural(name: str) -> tuple[str, int, str]:
    """batch/9 before batch/10."""
    head, _, tail = name.rpartition("/")
    return (head, int(tail), "") if tail.isdigit() else (head, -1, tail)


def verdict(reports: list[dict[str, Any]], live: int | None, max_sessions_alert: int, idle_over_day: int = 0) -> list[str]:
    """Why the run must fail, if it must: errors in either sweep, too many sessions still held, or
    interactive sessions idle for over a day (a client forgot them; they hold a Spark driver each)."""
    problems = [
        f"{report['sweep']} sweep: {report['errors']} error(s): {'; '.join(report['error_messages'][:3])}"
        for report in reports
        if report["errors"]
    ]
    if live is not None and live > max_sessions_alert:
        problems.append(
            f"the Livy server still holds {live} sessions after the sweep, more than max_sessions_alert={max_sessions_alert}: "
            "clients are not deleting their batches or the server keeps finished ones too long; it will run out of memory"
        )
    if idle_over_day:
        problems.append(
            f"{idle_over_day} interactive session(s) have been idle for over a day: a client forgot to delete them and "
            "each holds a Spark driver; set max_idle_seconds to end them, or lower the server's session timeout"
        )
    return problems
