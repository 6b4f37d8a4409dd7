"""The supervisor that runs each spark-submit, as real processes: held until told, or never told.

In a group of servers a driver starts only once its launch mark is stored (sessions/launching.py); the
supervisor's hold is what makes a server's death or fencing in between start nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from airflow_provider_livy.server.drivers import launcher

PRINT_RAN = [sys.executable, "-c", "print('the driver ran')"]


def wait_exit(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not launcher.reap(pid):
        assert time.monotonic() < deadline, "the supervisor did not end"
        time.sleep(0.02)


def start_held(tmp_path: Path) -> tuple[int, int, Path, Path]:
    log, exit_file = tmp_path / "1.log", tmp_path / "1.exit"
    theirs, ours = os.pipe()
    try:
        pid = launcher.start(PRINT_RAN, log, exit_file, dict(os.environ), held=theirs)
    finally:
        os.close(theirs)
    return pid, ours, log, exit_file


def test_a_held_supervisor_starts_the_driver_once_told(tmp_path: Path) -> None:
    pid, ours, log, exit_file = start_held(tmp_path)
    time.sleep(0.3)
    assert not log.read_text() and not exit_file.exists()  # waiting: nothing started
    assert launcher.is_held(psutil.Process(pid).cmdline())
    os.write(ours, b"g")
    os.close(ours)
    wait_exit(pid)
    assert launcher.read_exit_code(exit_file) == 0
    assert "the driver ran" in log.read_text()


def test_a_held_supervisor_whose_server_is_gone_starts_nothing(tmp_path: Path) -> None:
    pid, ours, log, exit_file = start_held(tmp_path)
    os.close(ours)  # what a server's death does to its end of the pipe
    wait_exit(pid, timeout=5)
    assert launcher.read_exit_code(exit_file) == launcher.NOT_STARTED
    assert "the driver ran" not in log.read_text()


def test_a_held_supervisor_never_told_gives_up_after_its_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launcher, "HOLD_LIMIT", 0.5)
    pid, ours, log, exit_file = start_held(tmp_path)
    try:
        wait_exit(pid, timeout=5)  # the pipe is still open: only the limit ends the wait
        assert launcher.read_exit_code(exit_file) == launcher.NOT_STARTED
        assert "the driver ran" not in log.read_text()
        with pytest.raises(BrokenPipeError):
            os.write(ours, b"g")  # a word that comes too late reaches nobody
    finally:
        os.close(ours)


def test_a_supervisor_not_held_starts_at_once(tmp_path: Path) -> None:
    log, exit_file = tmp_path / "2.log", tmp_path / "2.exit"
    pid = launcher.start(PRINT_RAN, log, exit_file, dict(os.environ))
    wait_exit(pid)
    assert launcher.read_exit_code(exit_file) == 0 and "the driver ran" in log.read_text()
    assert not launcher.is_held([sys.executable, "supervisor.py", str(exit_file), "--", "spark-submit", "--hold"])
