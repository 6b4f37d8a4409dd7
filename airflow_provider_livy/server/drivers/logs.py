"""Driver logs on disk: each batch writes to its own file, the server reads pages of it.

Memory holds at most livy.cache-log.size lines of an active batch; everything else is read
from the file when asked for, so a finished batch costs no memory for its log.

A Spark driver log can reach hundreds of megabytes, and a client following it asks for the page
after the last line it saw every few seconds. Pages are found through a line index: the byte
offset of every INDEX_STEP-th line, kept for the most recently read files and extended by only
the bytes written since, so a page costs a seek and the lines it returns, not the whole file.
Lines end at "\n" (a trailing "\r" is dropped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psutil

from airflow_provider_livy.server.config import ServerConfig

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
INDEX_STEP = 1024  # lines between two remembered offsets
INDEXED_FILES = 128  # line indexes kept, most recently read first


def default_log_dir(config: ServerConfig) -> Path:
    """Where driver logs and exit codes go when livy.server.log-dir is not set.

    With recovery on they are what a restart reads to learn how a driver ended, so they must
    outlive the process and must not depend on the port: beside the filesystem store, or for
    ZooKeeper under the state dir, one directory per key prefix. Without recovery nothing
    outlives the server, and a temp dir per port keeps two servers apart.
    """
    if config.log_dir:
        return Path(config.log_dir)
    if not config.recovery:
        return Path(tempfile.gettempdir()) / f"livy-server-{config.port}" / "logs"
    if config.state_store == "filesystem":
        from airflow_provider_livy.server.stores.filesystem import store_path

        return store_path(config.state_store_url) / "driver-logs"
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "_", config.zk_key_prefix.strip("/")) or "livy"
    return state_dir(config) / f"zookeeper-{prefix}" / "driver-logs"


def state_dir(config: ServerConfig) -> Path:
    """livy.server.state-dir, else the XDG state home: a place that survives reboots, unlike /tmp."""
    if config.state_dir:
        return Path(config.state_dir)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "livy-server"


def volatile_filesystem(path: Path) -> str | None:
    """The filesystem type when `path` lies on one that a reboot empties (tmpfs, ramfs), else None."""
    resolved = str(path.resolve())
    best = None
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint.rstrip("/") or "/"
        if (resolved == mount or resolved.startswith(mount.rstrip("/") + "/")) and (best is None or len(mount) > len(best[0])):
            best = (mount, part.fstype)
    return best[1] if best and best[1] in ("tmpfs", "ramfs") else None


def decode(raw: bytes) -> list[str]:
    """Lines as the index counts them: split at "\\n" only, so a page and the cached tail agree."""
    lines = raw.decode("utf-8", errors="replace").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


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


@dataclass
class LineIndex:
    """Where every INDEX_STEP-th line of a file starts, for the bytes read so far."""

    inode: int
    scanned: int = 0  # bytes counted
    newlines: int = 0
    partial: bool = False  # the last counted byte is not a newline: one more, unfinished line
    marks: list[int] = field(default_factory=lambda: [0])  # marks[k]: byte offset of line k * INDEX_STEP

    @property
    def lines(self) -> int:
        return self.newlines + self.partial

    def extend(self, handle: BinaryIO) -> None:
        """Count the bytes appended since the last call; only a mark's exact position needs a search."""
        handle.seek(self.scanned)
        while chunk := handle.read(_CHUNK):
            found = chunk.count(b"\n")
            at = 0
            while self.newlines // INDEX_STEP < (self.newlines + found) // INDEX_STEP:
                need = INDEX_STEP - self.newlines % INDEX_STEP  # newlines up to the next mark
                for _ in range(need):
                    at = chunk.index(b"\n", at) + 1
                self.newlines += need
                found -= need
                self.marks.append(self.scanned + at)
            self.newlines += found
            self.scanned += len(chunk)
            self.partial = not chunk.endswith(b"\n")


_indexes: OrderedDict[Path, LineIndex] = OrderedDict()
_lock = threading.Lock()  # pages are read from worker threads


def _index(path: Path, handle: BinaryIO) -> LineIndex:
    """The file's index brought up to date; a file that shrank or was replaced is counted afresh."""
    stat = os.fstat(handle.fileno())
    with _lock:
        index = _indexes.pop(path, None)
        if index is None or index.inode != stat.st_ino or index.scanned > stat.st_size:
            index = LineIndex(stat.st_ino)
        _indexes[path] = index
        while len(_indexes) > INDEXED_FILES:
            _indexes.popitem(last=False)
        index.extend(handle)
        return index


def read_page(path: Path, start: int | None, size: int) -> tuple[list[str], int]:
    """Lines [start, start+size) and the total line count; size < 0 means to the end, no start the last `size`."""
    try:
        with open(path, "rb") as handle:
            index = _index(path, handle)
            total = index.lines
            if start is None:
                start = 0 if size < 0 else max(0, total - size)
            end = total if size < 0 else min(total, start + size)
            if start >= end:
                return [], total
            mark = start // INDEX_STEP
            handle.seek(index.marks[mark])
            for _ in range(start - mark * INDEX_STEP):
                handle.readline()
            raw = [handle.readline() for _ in range(end - start)]
    except FileNotFoundError:
        return [], 0
    return decode(b"".join(raw)), total


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


SERVER_PREFIX = "livy-server: "  # how the server's own lines in a driver log begin
SESSION_FILES = (".log", ".exit", ".properties")  # a session's files in its family's log directory
LISTING_FROM = 64  # removing more sessions' files than this lists the directory once instead of trying each


def append_lines(path: Path, lines: list[str]) -> OSError | None:
    """Append lines to a driver log; the error when the disk refuses (full, read-only), None when written.
    Callers log the refusal and go on: a full log disk must never stop a session from reaching its end."""
    try:
        with open(path, "a") as handle:
            handle.writelines(line + "\n" for line in lines)
    except OSError as err:
        return err
    return None


@dataclass(frozen=True)
class SessionFiles:
    """One family's files in its log directory, per session: the driver log, the exit code the supervisor
    writes, and a cluster-mode session's --properties-file while spark-submit runs."""

    directory: Path

    def log(self, session_id: int) -> Path:
        return self.directory / f"{session_id}.log"

    def exit_code(self, session_id: int) -> Path:
        return self.directory / f"{session_id}.exit"

    def properties(self, session_id: int) -> Path:
        """0600, it holds the channel's secret: spark-submit reads it at its start, a restart needs none."""
        return self.directory / f"{session_id}.properties"

    def remove(self, ids: list[int]) -> None:
        remove_session_files(self.directory, ids)


def note(path: Path, word: str, session_id: int, line: str) -> None:
    """The `livy-server:` line writer: a line from the server in a session's log, where the user looks, and in
    the server's log. When the log disk refuses (full, read-only), the server's log has it and the caller goes on."""
    if (err := append_lines(path, [SERVER_PREFIX + line])) is not None:
        log.warning("%s %s: %s (could not write it to its log: %s)", word, session_id, line, err)
        return
    log.info("%s %s: %s", word, session_id, line)


def remove_session_files(directory: Path, ids: list[int]) -> None:
    """Every file of these sessions. Plain os calls: 80,000 of them through pathlib cost seconds of CPU;
    for many ids one listing, then only the files that exist (most expired sessions' logs are long gone)."""
    names = [f"{session_id}{suffix}" for session_id in ids for suffix in SESSION_FILES]
    if len(ids) > LISTING_FROM:
        try:
            names = sorted(set(names).intersection(os.listdir(directory)))
        except FileNotFoundError:
            return
    base = str(directory)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{base}/{name}")
