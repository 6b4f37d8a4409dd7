"""Cancelling a running statement: its Spark jobs first, then a signal that raises in its user code.

The handler of CANCEL_SIGNAL (Repl.on_cancel_signal) raises StatementCancelled only while the
statement runs user code and never in the REPL's own frames (frames.py), so the bookkeeping around
a statement cannot be torn. A signal also breaks a blocking call such as time.sleep.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from .log import log
from .statement import CANCELLING, Statement

CANCEL_SIGNAL = signal.SIGUSR2
# Grace between cancelJobGroup and the first interrupt: a statement blocked in a Spark job usually
# ends by itself once its jobs are cancelled, and then no Py4J call is ever interrupted.
CANCEL_GRACE_S = 0.2
CANCEL_REPEAT_S = 0.1
JOBS_AGAIN_S = 2.0  # while the code still runs, its jobs are cancelled again this often (it may start new ones)


def interrupt(stmt: Statement, cond: threading.Condition, main_thread: int, cancel_jobs: Callable[[], None]) -> None:
    """Cancel the statement's Spark jobs, then signal the main thread until the statement has ended."""
    cancel_jobs()
    last_jobs_cancel = time.monotonic()
    with cond:
        cond.wait_for(lambda: stmt.state != CANCELLING, timeout=CANCEL_GRACE_S)
        while stmt.state == CANCELLING:
            signal.pthread_kill(main_thread, CANCEL_SIGNAL)
            cond.wait_for(lambda: stmt.state != CANCELLING, timeout=CANCEL_REPEAT_S)
            if time.monotonic() - last_jobs_cancel > JOBS_AGAIN_S:  # jobs the code started since
                last_jobs_cancel = time.monotonic()
                cond.release()
                try:
                    cancel_jobs()
                finally:
                    cond.acquire()
    cancel_jobs()  # a job the interrupted Py4J call had asked for may have started since


def cancel_jobs(sc: Any, spark_major: int, stmt: Statement) -> None:
    """Cancel the statement's jobs, and (Spark 4) any it submits later: an interrupted Python call
    may leave its job request still on the way to the scheduler."""
    if sc is None:
        return
    try:
        if spark_major >= 4:
            sc._jsc.sc().cancelJobGroupAndFutureJobs(stmt.group, f"Livy statement {stmt.id} cancelled")
        else:
            sc.cancelJobGroup(stmt.group)
    except Exception as exc:  # Spark stopping: the interrupt still ends the statement
        log(f"cancelling the jobs of {stmt.group} failed: {exc}")


def drop_interrupted_connection(sc: Any) -> None:
    """A Py4J call interrupted mid-way leaves this thread's connection checked out, its JVM thread
    still busy with the call: close it, so the next call opens a fresh one instead of reading that
    call's late answer as its own (Py4J's pinned-thread client keeps one connection per thread)."""
    client = getattr(getattr(sc, "_gateway", None), "_gateway_client", None)
    connection = client.get_thread_connection() if hasattr(client, "get_thread_connection") else None
    if connection is not None and connection.socket is not None and connection not in client.deque:
        log("closing the Py4J connection of an interrupted call")
        connection.close()
