"""Capturing what a statement prints: the main thread's writes to stdout/stderr, in order and bounded."""

from __future__ import annotations

import io
import threading
from typing import Any


class Capture(io.TextIOBase):
    """sys.stdout/sys.stderr: what the main thread writes during a statement goes to its buffer
    (bounded: past `limit` characters the rest is dropped), everything else to the real stream."""

    def __init__(self, real: Any, sink: CaptureSink) -> None:
        super().__init__()
        self.real = real
        self.sink = sink

    def write(self, text: Any) -> int:
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8", "replace")
        if self.sink.active and threading.get_ident() == self.sink.thread:
            self.sink.add(text)
        else:
            self.real.write(text)
        return len(text)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def fileno(self) -> int:
        return self.real.fileno()


class CaptureSink:
    """The buffer shared by the captured stdout and stderr, so their lines keep their order."""

    def __init__(self) -> None:
        self.thread = threading.main_thread().ident
        self.active = False
        self.parts: list[str] = []
        self.kept = 0
        self.limit = 0

    def start(self, limit: int) -> None:
        self.parts, self.kept, self.limit, self.active = [], 0, limit, True

    def add(self, text: str) -> None:
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))

    def stop(self) -> str:
        self.active = False
        text = "".join(self.parts)
        self.parts = []
        return text
