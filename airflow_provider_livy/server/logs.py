"""Driver logs on disk: each batch writes to its own file, the server reads pages of it.

Memory holds at most livy.cache-log.size lines of an active batch; everything else is read
from the file when asked for, so a finished batch costs no memory for its log.
"""

from __future__ import annotations

import os
from pathlib import Path

_CHUNK = 1 << 16


def decode(raw: bytes) -> list[str]:
    return raw.decode("utf-8", errors="replace").splitlines()


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines, reading only as much of the end of the file as needed."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            data = b""
            pos = size
            while pos > 0 and data.count(b"\n") <= count:
                step = min(_CHUNK, pos)
                pos -= step
                handle.seek(pos)
                data = handle.read(step) + data
    except FileNotFoundError:
        return []
    return decode(data)[-count:]


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            total, last = 0, b"\n"
            while chunk := handle.read(_CHUNK):
                total += chunk.count(b"\n")
                last = chunk[-1:]
    except FileNotFoundError:
        return 0
    return total + (0 if last == b"\n" else 1)


def read_page(path: Path, start: int, size: int) -> tuple[list[str], int]:
    """Lines [start, start+size) and the total line count; size < 0 means to the end."""
    try:
        with open(path, "rb") as handle:
            lines = decode(handle.read())
    except FileNotFoundError:
        return [], 0
    end = len(lines) if size < 0 else start + size
    return lines[start:end], len(lines)


def read_new(path: Path, offset: int) -> tuple[list[str], int]:
    """Complete lines written since byte `offset`, and the offset after them."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
    cut = data.rfind(b"\n")
    if cut < 0:
        return [], offset
    return decode(data[: cut + 1]), offset + cut + 1


def remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
