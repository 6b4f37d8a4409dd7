"""Runs one spark-submit and records its exit code in a file.

The server starts this in a new session (process group) with stdout/stderr going to the batch's
log file. Because the exit code lands on disk rather than in the server's memory, a batch keeps
running through a server crash, and a restarted server still learns how it ended.

In a group of servers (recovery mode ha) it is started held: it waits for the server's word on fd 3
(one byte) before it starts anything, and the server gives it only once the store holds the launch mark
with this supervisor's pid. Without the word (the server died or was fenced: the pipe closes; or none
came within the limit) it records NOT_STARTED and ends, so whichever server leads launches the batch
again, and a driver runs exactly once.

It runs once per batch, so it starts lean: `python -S -E supervisor.py` with the standard
library's os, select and signal only (no subprocess module), about half the start-up cost of `-m`.

Usage: python -S -E supervisor.py [--hold SECONDS] EXIT_FILE -- COMMAND...
"""

import os
import select
import signal
import sys

HOLD_FD = 3  # a held supervisor's end of the server's pipe
NOT_STARTED = -1  # recorded by a held supervisor that started nothing (no exit code of a real process is negative)


def write_exit_code(path: str, code: int) -> None:
    """Atomically: the server never sees a half-written file."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, f"{code}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def told_to_start(limit: float) -> bool:
    """True once the server's byte arrives; False when its pipe closes first or the limit passes."""
    try:
        ready, _, _ = select.select([HOLD_FD], [], [], limit)
        return bool(ready) and os.read(HOLD_FD, 1) == b"g"
    finally:
        os.close(HOLD_FD)


def main(argv: list[str]) -> int:
    hold = None
    if len(argv) > 2 and argv[0] == "--hold":
        hold, argv = float(argv[1]), argv[2:]
    if len(argv) < 3 or argv[1] != "--":
        print("usage: supervisor [--hold SECONDS] EXIT_FILE -- COMMAND...", file=sys.stderr)
        return 2
    exit_file, command = argv[0], argv[2:]
    if hold is not None and not told_to_start(hold):
        write_exit_code(exit_file, NOT_STARTED)
        return 0
    # The server signals the whole group on DELETE. A no-op handler lets us outlive the driver
    # by a moment and record how it ended; the driver gets the default disposition back.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        pid = os.posix_spawnp(command[0], command, os.environ, setsigdef=(signal.SIGTERM,))
    except OSError as err:
        print(f"livy-server: cannot start {command[0]}: {err}", flush=True)
        write_exit_code(exit_file, 127)
        return 127
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    write_exit_code(exit_file, code if code >= 0 else 128 - code)  # killed by signal N: 128 + N, as shells say
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
