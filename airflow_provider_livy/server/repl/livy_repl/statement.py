"""One statement: its states (Livy's), its bookkeeping and its view."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

WAITING, RUNNING, AVAILABLE, CANCELLING, CANCELLED = "waiting", "running", "available", "cancelling", "cancelled"
FINAL_STATES = (AVAILABLE, CANCELLED)


def now_ms() -> int:
    return int(time.time() * 1000)


class Statement:
    """One statement and its bookkeeping (guarded by the REPL's condition)."""

    __slots__ = (
        "cancel_requested",
        "code",
        "completed",
        "group",
        "id",
        "in_user_code",
        "kind",
        "output",
        "progress",
        "progress_at",
        "started",
        "state",
    )

    def __init__(self, sid: int, code: str, kind: str) -> None:
        self.id = sid
        self.code = code
        self.kind = kind
        self.state = WAITING
        self.output: dict[str, Any] | None = None
        self.progress = 0.0
        self.progress_at = 0.0
        self.started = 0
        self.completed = 0
        self.group = f"livy-stmt-{sid}"
        self.cancel_requested = False
        self.in_user_code = False

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "state": self.state,
            "output": self.output,
            "progress": self.progress,
            "started": self.started,
            "completed": self.completed,
        }

    def run_user_code(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run user code: only in here may the cancel signal raise."""
        self.in_user_code = True
        try:
            return call(*args)
        finally:
            self.in_user_code = False
