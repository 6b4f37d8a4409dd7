"""The REPL: statements in order on the main thread, their queue, cancel and bookkeeping, and which
interpreter runs each (Python, SQL, Scala, R)."""

from __future__ import annotations

import linecache
import os
import socket
import threading
import time
import traceback
from collections import OrderedDict, deque
from typing import Any

from .cancel import cancel_jobs, drop_interrupted_connection, interrupt
from .errors import RequestError, StatementCancelled
from .frames import is_own
from .idle import IdleClock
from .kinds import SHARED, STATEMENT_KINDS_TEXT, resolve_kind, resolve_session_kind
from .log import log
from .outputs import cap_output, no_spark_output, plain_error
from .progress import update_progress
from .python import PythonInterpreter, statement_filename
from .r_setup import RSetup, locate_sparkr
from .scala import ScalaInterpreter
from .settings import Settings
from .sparkr import RInterpreter
from .sql import run_sql
from .statement import AVAILABLE, CANCELLED, CANCELLING, FINAL_STATES, RUNNING, WAITING, Statement, now_ms

STOP_WATCHDOG_S = 30.0


class Repl:
    """The statements, their queue and the interpreters. Statements run on the main thread (run_forever)."""

    def __init__(self, settings: Settings, spark: Any) -> None:
        self.settings = settings
        self.spark = spark
        self.sc = spark.sparkContext if spark is not None else None
        self.spark_major = int(spark.version.split(".")[0]) if spark is not None else 0
        self.kind = resolve_session_kind(settings.kind)
        self.python = PythonInterpreter(settings, spark)
        self.scala = ScalaInterpreter(spark, settings) if spark is not None else None  # starts at first use
        self.r = RInterpreter(spark, settings) if spark is not None else None  # likewise
        self.r_setup: RSetup | None = None
        self.cond = threading.Condition()
        self.statements: OrderedDict[int, Statement] = OrderedDict()
        self.queue: deque[Statement] = deque()
        self.current: Statement | None = None
        self.next_id = 0
        self.execution_count = 0
        self.version = 0
        self.last_activity = now_ms()
        self.idle = IdleClock()
        self.stopping: str | None = None
        self.main_thread = threading.main_thread().ident
        self.progress_lock = threading.Lock()
        self.counts = {"run": 0, "failed": 0, "cancelled": 0}  # for the server's metrics; kept across its restarts

    # --- bookkeeping (any thread) -------------------------------------------------------------

    def _changed(self, stmt: Statement, state: str) -> None:
        """A statement changes state (cond held): long polls wake up."""
        stmt.state = state
        self.version += 1
        if state == CANCELLED:
            self.counts["cancelled"] += 1
        elif state == AVAILABLE:
            self.counts["run"] += 1
            self.counts["failed"] += stmt.output is not None and stmt.output["status"] == "error"
        self.cond.notify_all()

    def submit(self, code: str, kind: str | None) -> dict[str, Any]:
        interpreter = resolve_kind(kind) if kind is not None else self.kind
        if interpreter is None:
            raise RequestError(400, f"a statement of a {SHARED} session needs a kind: {STATEMENT_KINDS_TEXT}")
        if interpreter == "sparkr":
            self.check_r()
        with self.cond:
            if self.stopping:
                raise RequestError(503, f"the driver is shutting down ({self.stopping})")
            self._make_room()
            stmt = Statement(self.next_id, code, interpreter)
            self.next_id += 1
            self.statements[stmt.id] = stmt
            self.queue.append(stmt)
            self.last_activity = now_ms()
            self._changed(stmt, WAITING)
            return stmt.view()

    def _make_room(self) -> None:
        """Drop the oldest finished statements so at most `retained` stay, counting the new one."""
        excess = len(self.statements) + 1 - self.settings.retained
        for sid in list(self.statements):
            if excess <= 0:
                return
            if self.statements[sid].state in FINAL_STATES:
                del self.statements[sid]
                linecache.cache.pop(statement_filename(sid), None)
                excess -= 1
        if excess > 0:
            raise RequestError(
                429,
                f"{len(self.statements)} statements are waiting or running "
                f"(LIVY_REPL_RETAINED={self.settings.retained}); retry when some have finished",
            )

    def check_r(self) -> RSetup:
        """R and SparkR on this driver's host, or a 400 naming what is missing (found once, then kept)."""
        if self.r_setup is None:
            conf = dict(self.sc.getConf().getAll()) if self.sc is not None else {}
            found = locate_sparkr(os.environ.get("SPARK_HOME", ""), conf, os.environ)
            if isinstance(found, str):
                host = socket.gethostname()
                raise RequestError(400, f"kind sparkr needs R and the SparkR package on the driver's host ({host}): {found}")
            self.r_setup = found
        return self.r_setup

    def get(self, sid: int) -> Statement:
        stmt = self.statements.get(sid)
        if stmt is None:
            raise RequestError(404, f"statement {sid} not found (never created, or no longer retained)")
        return stmt

    def view(self, stmt: Statement) -> dict[str, Any]:
        if stmt.state in (RUNNING, CANCELLING):
            update_progress(self.sc, stmt, self.progress_lock)
        return stmt.view()

    def wait_statement(self, sid: int, wait: float) -> dict[str, Any]:
        with self.cond:
            stmt = self.get(sid)
            state = stmt.state
            if wait > 0 and state not in FINAL_STATES:
                self.cond.wait_for(lambda: stmt.state != state, timeout=wait)
        return self.view(stmt)

    def list_statements(self, start: int, size: int | None, desc: bool) -> dict[str, Any]:
        with self.cond:
            items = list(self.statements.values())
        if desc:
            items.reverse()
        items = items[start:] if size is None else items[start : start + size]
        return {"total_statements": len(self.statements), "statements": [self.view(stmt) for stmt in items]}

    def status(self, wait: float, version: int | None) -> dict[str, Any]:
        with self.cond:
            seen = self.version if version is None else version
            if wait > 0:
                self.cond.wait_for(lambda: self.version != seen, timeout=wait)
            busy = self.current is not None or bool(self.queue)
            return {
                "state": "busy" if busy else "idle",
                "version": self.version,
                "lastActivity": self.last_activity,
                "statements": dict(self.counts),
            }

    def cancel(self, sid: int) -> None:
        with self.cond:
            stmt = self.get(sid)
            if stmt.state == WAITING:
                self.queue.remove(stmt)
                stmt.completed = now_ms()
                self.last_activity = stmt.completed
                self._changed(stmt, CANCELLED)
            elif stmt.state == RUNNING:
                stmt.cancel_requested = True
                self.last_activity = now_ms()
                self._changed(stmt, CANCELLING)
                args = (stmt, self.cond, self.main_thread, lambda: self._cancel_jobs(stmt))
                threading.Thread(target=interrupt, args=args, name=f"cancel-{sid}", daemon=True).start()

    def _cancel_jobs(self, stmt: Statement) -> None:
        cancel_jobs(self.sc, self.spark_major, stmt)
        if stmt.kind == "spark" and self.scala is not None:
            self.scala.interrupt()  # Scala code blocked outside a Spark job (a sleep, a lock) stops too

    def on_cancel_signal(self, _signum: int, frame: Any) -> None:
        """Signal handler (main thread): raise in user code of a statement being cancelled, never in ours."""
        stmt = self.current
        if stmt is None or not stmt.cancel_requested or not stmt.in_user_code:
            return
        if frame is not None and is_own(frame.f_code.co_filename):
            return
        raise StatementCancelled(f"statement {stmt.id} was cancelled")

    def request_stop(self, reason: str) -> None:
        """Stop after the running statement is cancelled; waiting ones are cancelled at once."""
        with self.cond:
            if self.stopping:
                return
            log(f"stopping: {reason}")  # before the main thread may exit
            self.stopping = reason
            for stmt in self.queue:
                stmt.completed = now_ms()
                self._changed(stmt, CANCELLED)
            self.queue.clear()
            running = self.current
            self.cond.notify_all()
        if running is not None:
            self.cancel(running.id)
        threading.Thread(target=_exit_if_stuck, name="stop-watchdog", daemon=True).start()

    # --- execution (main thread) ----------------------------------------------------------------

    def run_forever(self) -> None:
        """Run statements in order until asked to stop."""
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.queue or self.stopping)
                if self.stopping:
                    return
                stmt = self.queue.popleft()
                stmt.started = now_ms()
                self.current = stmt
                self._changed(stmt, RUNNING)
                count = self.execution_count
                self.execution_count += 1
            output = self.execute(stmt)
            if stmt.cancel_requested:
                drop_interrupted_connection(self.sc)
            output = cap_output({"status": output.pop("status"), "execution_count": count, **output}, self.settings.max_output)
            with self.cond:
                self.current = None
                stmt.output = output
                stmt.completed = now_ms()
                self.last_activity = stmt.completed
                if stmt.cancel_requested:
                    self._changed(stmt, CANCELLED)
                else:
                    stmt.progress = 1.0
                    self._changed(stmt, AVAILABLE)

    def execute(self, stmt: Statement) -> dict[str, Any]:
        """Run one statement; whatever happens, an output (user errors become error outputs)."""
        try:
            if self.sc is not None:
                self.sc.setJobGroup(stmt.group, f"Livy statement {stmt.id}", interruptOnCancel=True)
            if stmt.kind == "sql":
                return run_sql(self.spark, stmt, self.settings.sql_rows)
            if stmt.kind == "spark":
                if self.scala is None:
                    return no_spark_output("spark")
                return self.scala.run(stmt.code, lambda: stmt.cancel_requested)
            if stmt.kind == "sparkr":
                return self.run_r(stmt)
            return self.python.run(stmt)
        except BaseException as exc:  # a bug of ours, or Spark gone: the statement says so, the REPL lives on
            return {
                "status": "error",
                "ename": "InternalError",
                "evalue": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exception(exc),
            }

    def run_r(self, stmt: Statement) -> dict[str, Any]:
        if self.r is None:
            return no_spark_output("sparkr")
        try:
            setup = self.check_r()
        except RequestError as err:
            return plain_error("SparkRUnavailable", err.message)
        return self.r.run(stmt.code, stmt.group, setup, lambda: stmt.cancel_requested)

    def start_r(self) -> None:
        """Start R for a sparkr session, if this host has R and SparkR (else its statements get a 400)."""
        try:
            setup = self.check_r()
        except RequestError as err:
            log(err.message)
            return
        assert self.r is not None
        self.r.start(setup)

    def complete(self, code: str, cursor: int, kind: str | None) -> list[str]:
        """What completes the word before the cursor: Python names and attributes, or the Scala
        REPL's candidates; none for sql."""
        interpreter = resolve_kind(kind) if kind is not None else self.kind
        if interpreter == "spark":
            return self.scala.complete(code, cursor) if self.scala is not None else []
        if interpreter != "pyspark":
            return []
        return self.python.complete(code, cursor)


def _exit_if_stuck() -> None:
    """After a stop request the main thread exits; if user code will not let go, the process does."""
    time.sleep(STOP_WATCHDOG_S)
    log(f"still running {STOP_WATCHDOG_S:.0f} s after the stop request; exiting")
    os._exit(0)
