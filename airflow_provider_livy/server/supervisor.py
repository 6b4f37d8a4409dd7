"""Runs one spark-submit and records its exit code in a file.

The server starts this in a new session (process group) with stdout/stderr going to the batch's
log file. Because the exit code lands on disk rather than in the server's memory, a batch keeps
running through a server crash, and a restarted server still learns how it ended.

Usage: python -m airflow_provider_livy.server.supervisor EXIT_FILE -- COMMAND...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def write_exit_code(path: str, code: int) -> None:
    """Atomically: the server never sees a half-written file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        handle.write(f"{code}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: supervisor EXIT_FILE -- COMMAND...", file=sys.stderr)
        return 2
    exit_file, command = argv[0], argv[2:]
    # The server kills the whole group on DELETE. A no-op handler (reset to the default in the
    # child on exec) lets us outlive the driver by a moment and record how it ended.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    except OSError as err:
        print(f"livy-server: cannot start {command[0]}: {err}", flush=True)
        write_exit_code(exit_file, 127)
        return 127
    code = child.wait()
    write_exit_code(exit_file, code if code >= 0 else 128 - code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
