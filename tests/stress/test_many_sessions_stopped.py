"""A server stopped with hundreds of sessions open leaves no driver running.

With recovery off, a stopping server kills every driver it started. Killing one means asking the REPL to
shut down, then signalling the driver's process group and waiting until it is gone; hundreds of those run
at once. Each used to list every process on the host every 50 ms, so a server with 600 sessions did not stop
in minutes, and whatever stopped it harder left the drivers behind. The drivers here are stand-ins
(tests/stand_in_repl.py): real processes the server watches and kills, one shared stand-in REPL.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

from tests.stand_in_repl import STAND_IN_SPARK_HOME, stand_in_repl

SESSIONS = 200


def test_a_stopped_server_leaves_none_of_200_sessions_running(make_server) -> None:
    settings = {
        "livy.server.spark-home": str(STAND_IN_SPARK_HOME),
        "livy.server.session.max-creation": "32",
        "livy.server.session.max-sessions": str(SESSIONS + 10),
    }
    with stand_in_repl():
        server = make_server(settings)
        ids = [server.post("/sessions", json={}).json()["id"] for _ in range(SESSIONS)]
        for session_id in ids:
            server.wait_for(session_id, {"idle"}, path="/sessions", timeout=300)
        groups = {child.pid for child in psutil.Process(server.proc.pid).children()}  # each supervisor leads its group
        drivers = [p for p in psutil.process_iter() if _group_of(p.pid) in groups]
        assert len(groups) == SESSIONS and len(drivers) >= 2 * SESSIONS, "a supervisor and a driver per session"

        started = time.monotonic()
        code = server.stop(timeout=120)  # uvicorn ends a graceful stop by re-raising SIGTERM: -15
        assert code in (0, -signal.SIGTERM), f"the server did not stop within 120 s ({code}: killed by the test)"
        took = time.monotonic() - started
    left = [p for p in drivers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"{len(left)} drivers left running: {left[:5]}"
    print(f"stopped {SESSIONS} sessions in {took:.1f}s")


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
