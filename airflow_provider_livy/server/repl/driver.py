"""The REPL that runs inside the Spark driver of an interactive session.

spark-submit runs this file as the application's main Python file. It is ONE self-contained file
(standard library + pyspark only): in cluster deploy mode it runs on a node where our package is
not installed. The server and this driver talk over the channel below, which both sides implement
exactly.

## Launch
Environment (client/local mode: inherited from spark-submit; cluster mode: `spark.yarn.appMasterEnv.X`
or `spark.kubernetes.driverEnv.X` from a 0600 properties file, never the command line):
- `LIVY_REPL_SECRET` per-session secret; never printed.
- `LIVY_REPL_CALLBACK` URL this driver POSTs to once ready.
- `LIVY_REPL_KIND` the session kind (`pyspark`/`python`, `spark`/`scala`, `sparkr`/`r`, `sql`, `shared`).
- `LIVY_REPL_BIND` interface to listen on (default 127.0.0.1; 0.0.0.0 in cluster mode).
- `LIVY_REPL_IDLE_TIMEOUT` seconds (livy.rsc.server.idle-timeout, default 600): exit when no
  authenticated request arrived for that long, so a server that died for good leaves no driver behind.
- `LIVY_REPL_RETAINED` statements kept (livy.rsc.retained-statements, default 100).
- `LIVY_REPL_MAX_OUTPUT` max bytes of one statement's output as JSON (default 1 MiB); longer is cut
  with a marker.
- `LIVY_REPL_SQL_ROWS` rows a sql statement returns at most (livy.rsc.sql.num-rows, default 1000).
- `LIVY_REPL_NO_SPARK=1` (tests only): no SparkSession; pyspark statements run as plain Python.

Once the SparkSession exists and the HTTP server listens, the driver prints
`livy-repl: listening on http://<host>:<port>` (never the secret) and POSTs to LIVY_REPL_CALLBACK with
`Authorization: Bearer <secret>` and `{"address": "http://<host>:<port>", "appId", "sparkUiUrl"}`,
retrying with backoff on connection errors and 5xx. A 4xx answer means the server disowns this
driver: it stops and exits.

## HTTP API (JSON; every request needs `Authorization: Bearer <secret>`, else 401 `{"msg"}`)
Every authenticated request resets the idle-exit clock (a request in flight counts as activity).
- `GET /status[?wait=S&version=V]` -> `{"state": "idle"|"busy", "version", "lastActivity", "statements"}`;
  `version` grows at every statement state change; with `wait` the answer comes as soon as
  version != V (V defaults to the current version) or after S seconds. `lastActivity` (epoch ms) =
  last statement submitted, finished or cancelled, or the driver's start. `statements` counts since
  the driver started: `{"run": ended available, "failed": of those with an error output, "cancelled"}`.
- `POST /statements {"code", "kind"?}` -> 201 statement. Any session runs statements of kind
  pyspark, spark, sparkr and sql (Livy 0.5+); without `kind`, the session's. Unknown kind, `shared` as a
  statement kind, no kind in a `shared` session, and `sparkr` on a host without R or SparkR (the
  message names what is missing) -> 400. 429 when
  LIVY_REPL_RETAINED statements are already waiting or running (nothing could be dropped to keep the bound).
- `GET /statements?from=&size=&order=desc` -> `{"total_statements", "statements"}` (retained ones).
- `GET /statements/{sid}[?wait=S]` -> statement; with wait, answers when its state changes or after S.
- `POST /statements/{sid}/cancel` -> `{"msg": "canceled"}`.
- `POST /completion {"code", "kind", "cursor"}` -> `{"candidates"}`: Python names and attributes
  (rlcompleter), the Scala REPL's candidates for kind spark (member names, as its Tab shows them,
  e.g. `range` for `spark.ran`; [] until the Scala interpreter has started), [] for sql.
- `POST /shutdown` -> `{"msg": "shutting down"}`, then Spark stops and the process exits 0.

Statement = Livy's shape: `{"id", "code", "state", "output", "progress", "started", "completed"}`
(epoch ms, 0 when unset). States waiting -> running -> available; running -> cancelling -> cancelled;
waiting -> cancelled. Output ok: `{"status": "ok", "execution_count", "data": {mime: value}}`; error:
`{"status": "error", "execution_count", "ename", "evalue", "traceback": [lines]}`.

## Outputs
- pyspark: `text/plain` = stdout and stderr as written, then the repr of a final expression (as a
  Python shell shows it), trailing whitespace trimmed. A last line `%table expr`, `%json expr` or
  `%matplot expr` adds `application/vnd.livy.table.v1+json`, `application/json` or `image/png`
  (base64); `text/plain` is then present only when something was printed (Livy's rule). Table
  columns keep the order in which they first appear (Livy sorts dict keys).
- sql: `application/json` = `{"schema": <StructType JSON>, "data": [[values]]}`; dates and
  timestamps as ISO strings, decimals as numbers, binary as base64, NaN/Infinity as strings. When
  LIVY_REPL_SQL_ROWS cut rows, `"truncated": true` is added (Livy cuts silently).
- An output longer than LIVY_REPL_MAX_OUTPUT: text is cut and ends with `[livy-repl: output truncated ...]`;
  a structured value that does not fit is dropped with that marker in `text/plain`.

- spark (Scala): the Scala REPL of Spark's jars (IMain, class-based, `spark`, `sc` and spark-shell's
  imports bound; started at the first Scala statement, or in the background at launch for a `spark`
  session). `text/plain` = what the code printed (Console.out/err), then what the REPL reports
  (`val x: Int = 42`). A compile error: ename `Error`, evalue its first `error:` line; an exception:
  ename its class, evalue its message; traceback = every line printed. `%table x` / `%json x` as a
  last line as for Python (Datasets and RDDs give their first LIVY_REPL_SQL_ROWS rows).
  spark.repl.class.outputDir is set at Spark's start (a temp dir) so executors load REPL classes.
- sparkr (R): an Rscript child running SparkR on this JVM (Spark's RBackend, started through Py4J;
  R gets its port and secret as under Spark's R runner). Started at the first R statement, or in the
  background at launch for a `sparkr` session. `text/plain` = what R printed (visible values as its
  console prints them); an error: ename `Error`, evalue the first line of R's message, the traceback
  the lines printed and `Error in <call> : <message>`. See RInterpreter for cancel.

## Execution and cancel
Statements run one at a time, in order, on the MAIN thread (the HTTP server has its own threads),
each in Spark job group `livy-stmt-<id>`; progress = completed / total tasks of that group's jobs.
Cancel: `sc.cancelJobGroup`, then a signal to the main thread whose handler raises
`StatementCancelled` (a KeyboardInterrupt) in user code, repeated until the statement ends; a signal
also breaks a blocking call such as time.sleep. The handler never raises in this file's own frames,
so the bookkeeping around a statement cannot be torn. A Scala statement is never interrupted in
Python: its jobs are cancelled and its JVM thread gets Thread.interrupt (a sleep or wait ends).
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import datetime
import decimal
import hmac
import importlib.util
import io
import json
import linecache
import math
import os
import re
import rlcompleter
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections import OrderedDict, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

WAITING, RUNNING, AVAILABLE, CANCELLING, CANCELLED = "waiting", "running", "available", "cancelling", "cancelled"
FINAL_STATES = (AVAILABLE, CANCELLED)
KINDS = {
    "pyspark": "pyspark",
    "python": "pyspark",
    "sql": "sql",
    "spark": "spark",
    "scala": "spark",
    "sparkr": "sparkr",
    "r": "sparkr",
}
SHARED = "shared"  # a session kind only: each of its statements names its interpreter
STATEMENT_KINDS_TEXT = "pyspark (python), spark (scala), sparkr (r) or sql"
TABLE_MIME = "application/vnd.livy.table.v1+json"
MAX_WAIT_S = 300.0
MAX_BODY_BYTES = 16 * 1024 * 1024
CANCEL_SIGNAL = signal.SIGUSR2
# Grace between cancelJobGroup and the first interrupt: a statement blocked in a Spark job usually
# ends by itself once its jobs are cancelled, and then no Py4J call is ever interrupted.
CANCEL_GRACE_S = 0.2
CANCEL_REPEAT_S = 0.1
STOP_WATCHDOG_S = 30.0
PROGRESS_CACHE_S = 0.2
COMPLETION_WAIT_S = 5.0  # a completion waits this long for a running Scala statement, then answers []
# The markers name the server key a user sets (the driver reads it as LIVY_REPL_MAX_OUTPUT).
TRUNCATION_MARKER = "\n[livy-repl: output truncated at {limit} bytes (livy.rsc.statement.max-output-bytes)]"
DROPPED_MARKER = (
    "[livy-repl: the {mime} output ({size} bytes) is over {limit} bytes (livy.rsc.statement.max-output-bytes) and was dropped]"
)
DRIVER_FILE = (lambda: None).__code__.co_filename
LOG_STREAM = sys.stdout  # the real one, whatever statements do to sys.stdout


def now_ms() -> int:
    return int(time.time() * 1000)


def log(message: str) -> None:
    """A line in the driver log (the real stdout, which spark-submit's log file receives)."""
    LOG_STREAM.write(f"livy-repl: {message}\n")  # one write: lines from several threads stay whole
    LOG_STREAM.flush()


class Settings:
    """The driver's settings, from the environment the server set."""

    def __init__(self, env: dict[str, str]) -> None:
        self.secret = env.get("LIVY_REPL_SECRET", "")
        self.callback = env.get("LIVY_REPL_CALLBACK", "")
        self.kind = env.get("LIVY_REPL_KIND", "pyspark")
        self.bind = env.get("LIVY_REPL_BIND", "127.0.0.1")
        try:
            self.idle_timeout = float(env.get("LIVY_REPL_IDLE_TIMEOUT", "600"))
            self.retained = int(env.get("LIVY_REPL_RETAINED", "100"))
            self.max_output = int(env.get("LIVY_REPL_MAX_OUTPUT", str(1024 * 1024)))
            self.sql_rows = int(env.get("LIVY_REPL_SQL_ROWS", "1000"))
        except ValueError as err:
            raise SystemExit(f"livy-repl: a LIVY_REPL_ number setting is not a number: {err}") from None
        self.no_spark = env.get("LIVY_REPL_NO_SPARK") == "1"
        if self.callback and urllib.parse.urlsplit(self.callback).scheme not in ("http", "https"):
            raise SystemExit("livy-repl: LIVY_REPL_CALLBACK must be an http(s) URL")
        try:
            resolve_session_kind(self.kind)
        except RequestError as err:
            raise SystemExit(f"livy-repl: LIVY_REPL_KIND: {err.message}") from None
        if not self.secret:
            raise SystemExit("livy-repl: LIVY_REPL_SECRET is not set; refusing to serve without authentication")
        if self.retained < 1 or self.max_output < 256 or self.sql_rows < 0 or self.idle_timeout <= 0:
            raise SystemExit("livy-repl: LIVY_REPL_RETAINED, _MAX_OUTPUT, _SQL_ROWS or _IDLE_TIMEOUT out of range")


class RequestError(Exception):
    """A request we refuse: answered with `status` and `{"msg": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StatementCancelled(KeyboardInterrupt):
    """Raised in user code when its statement is cancelled (a KeyboardInterrupt, as Ctrl-C in a shell)."""


def resolve_kind(kind: Any) -> str:
    """The interpreter for a session or statement kind, or a 400 that says why not."""
    if not isinstance(kind, str):
        raise RequestError(400, f"kind must be a string, not {type(kind).__name__}")
    name = kind.lower()
    if name in KINDS:
        return KINDS[name]
    if name == SHARED:
        raise RequestError(400, f"'{SHARED}' is a session kind; a statement's kind is {STATEMENT_KINDS_TEXT}")
    raise RequestError(400, f"unknown kind '{kind}': use {STATEMENT_KINDS_TEXT}")


def resolve_session_kind(kind: Any) -> str | None:
    """A session's default interpreter; None for `shared`, whose statements must each name theirs."""
    if isinstance(kind, str) and kind.lower() == SHARED:
        return None
    return resolve_kind(kind)


# ---------------------------------------------------------------------------------------------
# Capturing what a statement prints


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


# ---------------------------------------------------------------------------------------------
# Values as JSON


def json_value(value: Any, strict: bool = False) -> Any:
    """A value JSON can carry: Rows become objects, dates ISO strings, binary base64.

    With strict, an object of no known type is an error (for %json) instead of its str().
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, decimal.Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else json_value(float(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, tuple) and hasattr(value, "__fields__"):  # pyspark.sql.Row
        return {name: json_value(item, strict) for name, item in zip(value.__fields__, value, strict=False)}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(item, strict) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item, strict) for key, item in value.items()}
    if strict:
        raise TypeError(f"a {type(value).__name__} cannot be shown as JSON")
    return str(value)


def _table_cell(value: Any) -> tuple[str, Any]:
    """Livy's table type name for a Python value, and the value as the table carries it."""
    if value is None:
        return "NULL_TYPE", None
    if isinstance(value, bool):
        return "BOOLEAN_TYPE", value
    if isinstance(value, int):
        return "INT_TYPE", value
    if isinstance(value, float):
        return "DOUBLE_TYPE", json_value(value)
    if isinstance(value, datetime.datetime):
        return "TIMESTAMP_TYPE", str(value)
    if isinstance(value, datetime.date):
        return "DATE_TYPE", str(value)
    if isinstance(value, decimal.Decimal):
        return "DECIMAL_TYPE", str(value)
    if isinstance(value, tuple) and hasattr(value, "__fields__"):
        return "MAP_TYPE", json_value(value)
    if isinstance(value, list | tuple):
        return "ARRAY_TYPE", json_value(value)
    if isinstance(value, dict):
        return "MAP_TYPE", json_value(value)
    return "STRING_TYPE", str(value)


def table_output(value: Any, max_rows: int) -> dict[str, Any]:
    """%table: rows (Rows, dicts, sequences or scalars; or a Spark DataFrame) as Livy's table JSON."""
    if hasattr(value, "schema") and hasattr(value, "take"):  # a Spark DataFrame
        value = value.take(max_rows)
    if not isinstance(value, list | tuple):
        value = [value]
    headers: dict[str, dict[str, str]] = {}
    data = []
    for row in value:
        if isinstance(row, tuple) and hasattr(row, "__fields__"):
            cells = list(zip(row.__fields__, row, strict=False))
        elif isinstance(row, dict):
            cells = [(str(key), item) for key, item in row.items()]
        elif isinstance(row, list | tuple):
            cells = [(str(index), item) for index, item in enumerate(row)]
        else:
            cells = [("0", row)]
        out = []
        for name, item in cells:
            kind, cell = _table_cell(item)
            header = headers.setdefault(name, {"name": name, "type": kind})
            if header["type"] == "NULL_TYPE":
                header["type"] = kind
            elif kind not in ("NULL_TYPE", header["type"]):
                raise TypeError(f"table rows have different types in column '{name}': {header['type']} and {kind}")
            out.append(cell)
        data.append(out)
    return {TABLE_MIME: {"headers": list(headers.values()), "data": data}}


def matplot_output(value: Any) -> dict[str, Any]:
    """%matplot: the current figure of a pyplot module (or a Figure) as a base64 PNG."""
    figure = value.gcf() if hasattr(value, "gcf") else value
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii")}


MAGICS = ("table", "json", "matplot")


def cap_output(output: dict[str, Any], limit: int) -> dict[str, Any]:
    """Keep one statement's output within `limit` bytes of JSON, with a marker saying what was cut."""
    size = len(json.dumps(output).encode())
    if size <= limit:
        return output
    budget = max(limit - 512, limit // 2)
    if output["status"] == "error":
        evalue = _cut(output["evalue"], budget // 2, limit)
        lines, used = [], len(evalue.encode())
        for line in reversed(output["traceback"]):  # the frames nearest the error matter most
            used += len(line.encode()) + 8
            if used > budget:
                lines.append(TRUNCATION_MARKER.format(limit=limit).strip() + "\n")
                break
            lines.append(line)
        return {**output, "evalue": evalue, "traceback": lines[::-1]}
    data = dict(output["data"])
    text = data.pop("text/plain", "")
    notes = []
    for mime in list(data):
        mime_size = len(json.dumps(data[mime]).encode())
        if mime_size > budget // 2:
            del data[mime]
            notes.append(DROPPED_MARKER.format(mime=mime, size=mime_size, limit=limit))
    room = budget - len(json.dumps(data).encode()) - sum(len(note) + 1 for note in notes)
    text = _cut(text, room, limit)
    text = "\n".join([text, *notes]) if text else "\n".join(notes)
    return {**output, "data": {"text/plain": text, **data}}


def _cut(text: str, room: int, limit: int) -> str:
    """The text cut to about `room` bytes of UTF-8 (JSON escapes counted), marker included."""
    if len(json.dumps(text).encode()) <= room:
        return text
    marker = TRUNCATION_MARKER.format(limit=limit)
    room = max(0, room - len(marker) - 2)
    cut = text[:room]
    while cut and len(json.dumps(cut).encode()) > room:
        cut = cut[: max(0, len(cut) - max(1, (len(json.dumps(cut).encode()) - room) // 2))]
    return cut + marker


# ---------------------------------------------------------------------------------------------
# Statements


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


def error_output(exc: BaseException, tb: Any = None) -> dict[str, Any]:
    """Livy's error shape, with the traceback of user frames only (this file's frames skipped)."""
    report = traceback.TracebackException(type(exc), exc, tb)
    report.stack = traceback.StackSummary.from_list([frame for frame in report.stack if frame.filename != DRIVER_FILE])
    lines = list(report.format())
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": lines}


class Repl:
    """The statements, their queue and the interpreters. Statements run on the main thread (run_forever)."""

    def __init__(self, settings: Settings, spark: Any) -> None:
        self.settings = settings
        self.spark = spark
        self.sc = spark.sparkContext if spark is not None else None
        self.spark_major = int(spark.version.split(".")[0]) if spark is not None else 0
        self.kind = resolve_session_kind(settings.kind)
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
        self.last_request = time.monotonic()
        self.requests_in_flight = 0
        self.stopping: str | None = None
        self.main_thread = threading.main_thread().ident
        self.sink = CaptureSink()
        self.streams = (sys.stdout, sys.stderr)  # main() puts Captures here
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        if spark is not None:
            self.namespace.update(spark=spark, sc=self.sc)
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
                linecache.cache.pop(_filename(sid), None)
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
            self._update_progress(stmt)
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
                threading.Thread(target=self._interrupt, args=(stmt,), name=f"cancel-{sid}", daemon=True).start()

    def _interrupt(self, stmt: Statement) -> None:
        """Cancel the statement's Spark jobs, then interrupt its Python code until it has ended."""
        self._cancel_jobs(stmt)
        last_jobs_cancel = time.monotonic()
        with self.cond:
            self.cond.wait_for(lambda: stmt.state != CANCELLING, timeout=CANCEL_GRACE_S)
            while stmt.state == CANCELLING:
                signal.pthread_kill(self.main_thread, CANCEL_SIGNAL)
                self.cond.wait_for(lambda: stmt.state != CANCELLING, timeout=CANCEL_REPEAT_S)
                if time.monotonic() - last_jobs_cancel > 2:  # jobs the code started since
                    last_jobs_cancel = time.monotonic()
                    self.cond.release()
                    try:
                        self._cancel_jobs(stmt)
                    finally:
                        self.cond.acquire()
        self._cancel_jobs(stmt)  # a job the interrupted Py4J call had asked for may have started since

    def _cancel_jobs(self, stmt: Statement) -> None:
        """Cancel the statement's jobs, and (Spark 4) any it submits later: an interrupted Python call
        may leave its job request still on the way to the scheduler."""
        if self.sc is None:
            return
        try:
            if self.spark_major >= 4:
                self.sc._jsc.sc().cancelJobGroupAndFutureJobs(stmt.group, f"Livy statement {stmt.id} cancelled")
            else:
                self.sc.cancelJobGroup(stmt.group)
        except Exception as exc:  # Spark stopping: the interrupt still ends the statement
            log(f"cancelling the jobs of {stmt.group} failed: {exc}")
        if stmt.kind == "spark" and self.scala is not None:
            self.scala.interrupt()  # Scala code blocked outside a Spark job (a sleep, a lock) stops too

    def on_cancel_signal(self, _signum: int, frame: Any) -> None:
        """Signal handler (main thread): raise in user code of a statement being cancelled, never in ours."""
        stmt = self.current
        if stmt is None or not stmt.cancel_requested or not stmt.in_user_code:
            return
        if frame is not None and frame.f_code.co_filename == DRIVER_FILE:
            return
        raise StatementCancelled(f"statement {stmt.id} was cancelled")

    def _update_progress(self, stmt: Statement) -> None:
        """Completed tasks / all tasks of the statement's jobs, asked of Spark at most every 0.2 s."""
        if self.sc is None or time.monotonic() - stmt.progress_at < PROGRESS_CACHE_S:
            return
        with self.progress_lock:
            if time.monotonic() - stmt.progress_at < PROGRESS_CACHE_S:
                return
            try:
                tracker = self.sc.statusTracker()
                total = done = 0
                for job_id in tracker.getJobIdsForGroup(stmt.group):
                    job = tracker.getJobInfo(job_id)
                    for stage_id in job.stageIds if job else ():
                        stage = tracker.getStageInfo(stage_id)
                        if stage:
                            total += stage.numTasks
                            done += stage.numCompletedTasks
            except Exception as exc:  # Spark stopping: keep the last figure
                log(f"progress of statement {stmt.id}: {exc}")
                return
            finally:
                stmt.progress_at = time.monotonic()
            if total and stmt.state in (RUNNING, CANCELLING):
                stmt.progress = done / total

    def touch(self, started: bool) -> None:
        """An authenticated request begins or ends: the idle-exit clock restarts."""
        with self.cond:
            self.requests_in_flight += 1 if started else -1
            self.last_request = time.monotonic()

    def idle_for(self) -> float:
        with self.cond:
            return 0.0 if self.requests_in_flight else time.monotonic() - self.last_request

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
                self._drop_interrupted_connection()
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

    def _drop_interrupted_connection(self) -> None:
        """A Py4J call interrupted mid-way leaves this thread's connection checked out, its JVM thread
        still busy with the call: close it, so the next call opens a fresh one instead of reading that
        call's late answer as its own (Py4J's pinned-thread client keeps one connection per thread)."""
        client = getattr(getattr(self.sc, "_gateway", None), "_gateway_client", None)
        connection = client.get_thread_connection() if hasattr(client, "get_thread_connection") else None
        if connection is not None and connection.socket is not None and connection not in client.deque:
            log("closing the Py4J connection of an interrupted call")
            connection.close()

    def execute(self, stmt: Statement) -> dict[str, Any]:
        """Run one statement; whatever happens, an output (user errors become error outputs)."""
        try:
            if self.sc is not None:
                self.sc.setJobGroup(stmt.group, f"Livy statement {stmt.id}", interruptOnCancel=True)
            if stmt.kind == "sql":
                return self.run_sql(stmt)
            if stmt.kind == "spark":
                return self.run_scala(stmt)
            if stmt.kind == "sparkr":
                return self.run_r(stmt)
            return self.run_python(stmt)
        except BaseException as exc:  # a bug of ours, or Spark gone: the statement says so, the REPL lives on
            return {
                "status": "error",
                "ename": "InternalError",
                "evalue": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exception(exc),
            }

    def _user(self, stmt: Statement, call: Any, *args: Any) -> Any:
        """Run user code: only in here may the cancel signal raise."""
        stmt.in_user_code = True
        try:
            return call(*args)
        finally:
            stmt.in_user_code = False

    def run_python(self, stmt: Statement) -> dict[str, Any]:
        filename = _filename(stmt.id)
        lines = stmt.code.splitlines(keepends=True)
        linecache.cache[filename] = (len(stmt.code), None, lines, filename)
        magic = None
        try:
            tree = ast.parse(stmt.code, filename)
        except SyntaxError as exc:
            last = stmt.code.rstrip().rsplit("\n", 1)
            if not last[-1].startswith("%"):
                return error_output(exc)
            magic = last[-1]
            try:
                tree = ast.parse(last[0] if len(last) > 1 else "", filename)
            except SyntaxError as inner:
                return error_output(inner)
        final = None
        if magic is None and tree.body and isinstance(tree.body[-1], ast.Expr):
            final = ast.Expression(tree.body.pop().value)
        sys.stdout, sys.stderr = self.streams  # again: an earlier statement may have replaced them
        self.sink.start(self.settings.max_output)
        data: dict[str, Any] = {}
        try:
            self._user(stmt, self._run_code, tree, final, filename)
            if magic is not None:
                data = self._user(stmt, self._run_magic, magic, filename)
        except BaseException as exc:  # user code failed (or was cancelled): Livy's error output
            self.sink.stop()
            return error_output(exc, exc.__traceback__)
        text = self.sink.stop().rstrip()  # past the limit: cap_output cuts and marks it
        if text or not data:
            data = {"text/plain": text, **data}
        return {"status": "ok", "data": data}

    def _run_code(self, tree: ast.Module, final: ast.Expression | None, filename: str) -> None:
        if tree.body:
            exec(compile(tree, filename, "exec"), self.namespace)  # noqa: S102 - running user code is the job
        if final is not None:
            value = eval(compile(final, filename, "eval"), self.namespace)  # noqa: S307 - as above
            if value is not None:
                self.namespace["_"] = value
                self.streams[0].write(repr(value) + "\n")

    def _run_magic(self, line: str, filename: str) -> dict[str, Any]:
        name, _, expression = line[1:].strip().partition(" ")
        if name not in MAGICS:
            raise ValueError(f"unknown magic command '%{name}': use %table, %json or %matplot")
        if not expression.strip():
            raise ValueError(f"%{name} needs a variable, e.g. %{name} x")
        if name == "matplot" and importlib.util.find_spec("matplotlib") is None:
            raise ModuleNotFoundError("%matplot needs matplotlib, which is not installed in the driver's Python")
        value = eval(compile(expression.strip(), filename, "eval"), self.namespace)  # noqa: S307 - user code
        if name == "table":
            return table_output(value, self.settings.sql_rows)
        if name == "json":
            return {"application/json": json_value(value, strict=True)}
        return matplot_output(value)

    def run_sql(self, stmt: Statement) -> dict[str, Any]:
        if self.spark is None:
            return no_spark_output("sql")
        limit = self.settings.sql_rows
        try:
            frame, rows = self._user(stmt, self._query, stmt.code, limit)
        except BaseException as exc:
            output = error_output(exc)
            output["traceback"] = []  # pyspark's frames say nothing about the query
            return output
        result: dict[str, Any] = {"schema": frame.schema.jsonValue(), "data": [json_value(list(row)) for row in rows[:limit]]}
        if len(rows) > limit:
            result["truncated"] = True
        return {"status": "ok", "data": {"application/json": result}}

    def run_scala(self, stmt: Statement) -> dict[str, Any]:
        if self.scala is None:
            return no_spark_output("spark")
        return self.scala.run(stmt.code, lambda: stmt.cancel_requested)

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

    def _query(self, code: str, limit: int) -> tuple[Any, list[Any]]:
        frame = self.spark.sql(code)
        return frame, frame.take(limit + 1)

    def complete(self, code: str, cursor: int, kind: str | None) -> list[str]:
        """What completes the word before the cursor: Python names and attributes, or the Scala
        REPL's candidates; none for sql."""
        interpreter = resolve_kind(kind) if kind is not None else self.kind
        if interpreter == "spark":
            return self.scala.complete(code, cursor) if self.scala is not None else []
        if interpreter != "pyspark":
            return []
        head = code[:cursor]
        start = len(head)
        while start > 0 and (head[start - 1].isalnum() or head[start - 1] in "._"):
            start -= 1
        word = head[start:]
        if not word:
            return []
        completer = rlcompleter.Completer(dict(self.namespace))
        candidates: list[str] = []
        for state in range(1000):
            try:
                match = completer.complete(word, state)
            except Exception:  # an attribute whose lookup raises: stop there
                break
            if match is None:
                break
            if match not in candidates:
                candidates.append(match)
        return candidates


def plain_error(ename: str, evalue: str) -> dict[str, Any]:
    """An error output without a traceback (nothing in it would help)."""
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": []}


def no_spark_output(kind: str) -> dict[str, Any]:
    return plain_error("RuntimeError", f"{kind} needs Spark (LIVY_REPL_NO_SPARK is set)")


def _filename(sid: int) -> str:
    return f"<statement {sid}>"


def _exit_if_stuck() -> None:
    """After a stop request the main thread exits; if user code will not let go, the process does."""
    time.sleep(STOP_WATCHDOG_S)
    log(f"still running {STOP_WATCHDOG_S:.0f} s after the stop request; exiting")
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# Scala (kind spark): the Scala REPL that ships in Spark's jars, driven through Py4J


# Bound as spark-shell binds them (@transient: closures that capture the REPL's line objects stay
# serializable). LivyReplSupport gives statements a capped stdout and turns values into JSON for
# %table/%json; its instances are read back through vals, the one kind of term IMain hands out.
SCALA_PRELUDE = """\
object LivyReplSupport extends Serializable {
  final class CappedOutput(limit: Int) extends java.io.OutputStream {
    private val bytes = new java.io.ByteArrayOutputStream()
    override def write(b: Int): Unit = if (bytes.size < limit) bytes.write(b)
    override def write(b: Array[Byte], off: Int, len: Int): Unit =
      bytes.write(b, off, math.min(len, math.max(0, limit - bytes.size)))
    def take(): String = { val text = bytes.toString("UTF-8"); bytes.reset(); text }
  }
  private def render(value: Any): String =
    org.json4s.jackson.JsonMethods.compact(org.json4s.Extraction.decompose(value)(org.json4s.DefaultFormats))
  def json(value: Any, rows: Int): String = value match {
    case frame: org.apache.spark.sql.Dataset[_] => frame.toDF().toJSON.take(rows).mkString("[", ",", "]")
    case rdd: org.apache.spark.rdd.RDD[_] => render(rdd.take(rows))
    case other => render(other)
  }
}
@transient val livyReplOutput = new LivyReplSupport.CappedOutput(%(limit)d)
@transient val spark = org.apache.spark.sql.SparkSession.builder.getOrCreate()
@transient val sc = spark.sparkContext
import org.apache.spark.SparkContext._
import spark.implicits._
import spark.sql
import org.apache.spark.sql.functions._
"""
SCALA_MAGIC_TERM = "livyReplMagic"
SCALA_MAGICS = ("table", "json")
# `java.lang.RuntimeException: boom` (a runtime exception the REPL printed), as opposed to a compile error.
SCALA_EXCEPTION_LINE = re.compile(r"^((?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*)(?:: (.*))?$")


class ScalaInterpreter:
    """scala.tools.nsc.interpreter.IMain in this driver's JVM, on the SparkSession Python uses.

    Started at its first statement (a `spark` session starts it in the background at launch), so a
    session that never runs Scala pays nothing. Spark must have started with
    `spark.repl.class.outputDir` (start_spark sets it): executors load the classes the REPL compiles
    from there. Statements run on the calling (main) thread, which Py4J pins to one JVM thread: the
    statement's job group applies to the Scala code's jobs, and `interrupt` reaches that thread.
    """

    def __init__(self, spark: Any, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.lock = threading.Lock()  # guards the start
        self.intp: Any = None
        self.writer: Any = None
        self.buffer: Any = None
        self.output: Any = None
        self.stream: Any = None
        self.console_vars: list[Any] = []
        self.failure: str | None = None
        self.thread_lock = threading.Lock()  # orders interrupts against the end of a statement
        self.thread: Any = None
        # A statement and a completion never use the interpreter at once: both compile, and IMain's
        # state (line counter, imports, the reporter's buffer) is not made for two threads.
        self.busy = threading.Lock()
        self.completer: Any = None

    def start(self) -> None:
        """Create the interpreter and bind spark and sc (any thread; once)."""
        with self.lock:
            if self.intp is not None or self.failure is not None:
                return
            started = time.monotonic()
            try:
                self._create()
            except Exception as exc:  # the jars lack the REPL, or the prelude failed: every Scala statement says so
                self.failure = f"{type(exc).__name__}: {exc}"
                log(f"the Scala interpreter did not start: {self.failure}")
                return
            log(f"Scala interpreter ready in {time.monotonic() - started:.1f} s")

    def _create(self) -> None:
        jvm = self.spark._jvm
        conf = self.spark.sparkContext.getConf()
        outdir = conf.get("spark.repl.class.outputDir", None)
        if not outdir:
            raise RuntimeError("spark.repl.class.outputDir was not set when Spark started")
        arguments = ["-Yrepl-class-based", "-Yrepl-outdir", outdir, "-usejavacp"]
        jars = user_jars(conf.get("spark.jars", ""))
        if jars:
            arguments += ["-classpath", os.pathsep.join(jars)]
        settings = jvm.scala.tools.nsc.Settings()
        listing = jvm.java.util.ArrayList()
        for argument in arguments:
            listing.add(argument)
        settings.processArguments(jvm.scala.jdk.javaapi.CollectionConverters.asScala(listing).toList(), True)
        self.buffer = jvm.java.io.StringWriter()
        self.writer = jvm.java.io.PrintWriter(self.buffer)
        reporter = jvm.scala.tools.nsc.interpreter.shell.ReplReporterImpl(settings, self.writer)
        self.intp = jvm.scala.tools.nsc.interpreter.IMain(settings, reporter)
        result = self.intp.interpret(SCALA_PRELUDE % {"limit": self.settings.max_output}).toString()
        text = self._reported()
        if result != "Success":
            self.intp = None
            raise RuntimeError(f"binding spark and sc failed: {text.strip()}")
        self.output = self.intp.valueOfTerm("livyReplOutput").get()
        self.stream = jvm.java.io.PrintStream(self.output, True, "UTF-8")
        console = jvm.java.lang.Class.forName("scala.Console$")
        module = console.getField("MODULE$").get(None)
        for name in ("outVar", "errVar"):  # Console.out/err are thread-local DynamicVariables
            field = console.getDeclaredField(name)
            field.setAccessible(True)
            self.console_vars.append(field.get(module))

    def _reported(self) -> str:
        """What the REPL reported since the last call (results, compile errors, exceptions)."""
        self.writer.flush()
        text = self.buffer.toString()
        self.buffer.getBuffer().setLength(0)
        return text

    def _interpret(self, code: str) -> tuple[str, str, str]:
        """Result (Success, Error, Incomplete), what the code printed, what the REPL reported."""
        result = self.intp.interpret(code).toString()
        return result, self.output.take(), self._reported()

    def run(self, code: str, cancelled: Any) -> dict[str, Any]:
        """One statement: Livy's ok or error output (without execution_count)."""
        self.start()
        if self.failure is not None:
            return plain_error("ScalaUnavailable", self.failure)
        if cancelled():
            return plain_error("StatementCancelled", "cancelled before it started")
        body, magic = split_magic(code)
        jvm = self.spark._jvm
        with self.thread_lock:
            self.thread = jvm.java.lang.Thread.currentThread()
        for variable in self.console_vars:
            getattr(variable, "value_$eq")(self.stream)  # this thread's Console.out/err: the statement's buffer
        with self.busy:
            return self._run(body, magic)

    def _run(self, body: str, magic: str | None) -> dict[str, Any]:
        jvm = self.spark._jvm
        try:
            text = ""
            if body.strip():
                result, printed, reported = self._interpret(body)
                if result == "Error" and not (printed + reported).strip():
                    result, printed, reported = self._interpret("{\n" + body + "\n}")  # comments only
                if result != "Success":
                    return scala_error(result, printed, reported)
                text = (printed + reported).rstrip()
            if magic is None:
                return {"status": "ok", "data": {"text/plain": text}}
            data = self._magic(magic)
            if data.get("status") == "error":
                return data
            return {"status": "ok", "data": {"text/plain": text, **data} if text else data}
        finally:
            with self.thread_lock:
                self.thread = None
                jvm.java.lang.Thread.interrupted()  # an interrupt that came as the statement ended
            self.output.take()

    def _magic(self, line: str) -> dict[str, Any]:
        name, _, expression = line[1:].strip().partition(" ")
        if name not in SCALA_MAGICS:
            return plain_error("UnknownMagic", f"unknown magic command '%{name}': use %table or %json")
        if not expression.strip():
            return plain_error("ValueError", f"%{name} needs a value, e.g. %{name} x")
        rows = self.settings.sql_rows
        result, printed, reported = self._interpret(
            f"val {SCALA_MAGIC_TERM} = LivyReplSupport.json(({expression.strip()}), {rows})"
        )
        if result != "Success":
            return scala_error(result, printed, reported)
        value = json.loads(self.intp.valueOfTerm(SCALA_MAGIC_TERM).get())
        if name == "json":
            return {"application/json": value}
        try:
            return table_output(value, rows)
        except TypeError as exc:
            return plain_error("TypeError", str(exc))

    def complete(self, code: str, cursor: int) -> list[str]:
        """The Scala REPL's completions at the cursor (its presentation compiler, as a shell's Tab):
        the names that complete the word there, each once. Empty while the interpreter is not
        running (a completion never starts it) or a statement holds it longer than COMPLETION_WAIT_S."""
        if self.intp is None or not self.busy.acquire(timeout=COMPLETION_WAIT_S):
            return []
        try:
            if self.completer is None:
                shell = self.spark._jvm.scala.tools.nsc.interpreter.shell
                self.completer = shell.ReplCompletion(self.intp, shell.Accumulator())
            result = self.completer.complete(code, cursor, True)  # True: only names that match the word
            names = result.candidates().iterator()
            candidates: list[str] = []
            while names.hasNext():
                name = names.next().name()
                if name not in candidates:
                    candidates.append(name)
            return candidates
        finally:
            self._reported()  # whatever the presentation compiler reported is not a statement's output
            self.busy.release()

    def interrupt(self) -> None:
        """Interrupt the JVM thread running a statement (cancel), if one is running."""
        with self.thread_lock:
            if self.thread is not None:
                self.thread.interrupt()


def split_magic(code: str) -> tuple[str, str | None]:
    """The code before a last line `%magic expression`, and that line (None without one)."""
    lines = code.rstrip().split("\n")
    if lines and lines[-1].lstrip().startswith("%"):
        return "\n".join(lines[:-1]), lines[-1].strip()
    return code, None


def scala_error(result: str, printed: str, reported: str) -> dict[str, Any]:
    """Livy's error shape from what the Scala REPL reported: an exception's class and message, or the
    compile error's first line; the traceback is every line it printed."""
    if result == "Incomplete":
        return plain_error("Error", "incomplete statement")
    lines = [line for line in (printed + reported).splitlines(keepends=True)]
    reported_lines = [line.strip() for line in reported.splitlines() if line.strip()]
    first = reported_lines[0] if reported_lines else "unknown error"
    exception = SCALA_EXCEPTION_LINE.match(first)
    if exception:
        return {"status": "error", "ename": exception.group(1), "evalue": exception.group(2) or "", "traceback": lines}
    evalue = next((line for line in reported_lines if "error:" in line), first)
    return {"status": "error", "ename": "Error", "evalue": evalue, "traceback": lines}


def user_jars(spark_jars: str) -> list[str]:
    """The local files among spark.jars, for the Scala compiler's classpath (as spark-shell adds them)."""
    paths = []
    for entry in filter(None, (item.strip() for item in spark_jars.split(","))):
        url = urllib.parse.urlsplit(entry)
        path = urllib.parse.unquote(url.path) if url.scheme in ("file", "local") else entry if not url.scheme else ""
        if path and os.path.isfile(path):
            paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# R (kind sparkr): an R process running statements through SparkR on this driver's JVM


class RSetup(NamedTuple):
    """Where R and SparkR are on this host."""

    rscript: str  # the R front end (absolute path)
    library: str  # an R library directory holding SparkR/; "" when R's own library has it
    archive: str  # SPARK_HOME/R/lib/sparkr.zip, unpacked at the R process's start; "" when unused


def r_command(conf: dict[str, str]) -> str:
    """The R front end Spark's own R runner uses for a driver: spark.r.driver.command, spark.r.command,
    the older spark.sparkr.r.command, else Rscript."""
    for key in ("spark.r.driver.command", "spark.r.command", "spark.sparkr.r.command"):
        if conf.get(key):
            return conf[key]
    return "Rscript"


def locate_sparkr(spark_home: str, conf: dict[str, str], env: Any, probe: bool = True) -> RSetup | str:
    """R and the SparkR package on this host, or what is missing (a sentence naming each thing).

    SparkR is looked for where Spark looks: SPARKR_PACKAGE_DIR, SPARK_HOME/R/lib/SparkR (a Spark
    distribution; pip's pyspark has no R/ directory), SPARK_HOME/R/lib/sparkr.zip (the archive
    Spark ships to YARN), then R's own library, which only R can tell: it is asked to load the
    SparkR namespace (a child process without a shell; about 1 s, and only when the directories
    have no SparkR). With `probe` False that last question is not asked.
    """
    command = r_command(conf)
    rscript = shutil.which(command, path=env.get("PATH"))
    directories = [d for d in env.get("SPARKR_PACKAGE_DIR", "").split(",") if d]
    lib = os.path.join(spark_home, "R", "lib") if spark_home else ""
    if lib:
        directories.append(lib)
    library = next((d for d in directories if os.path.isfile(os.path.join(d, "SparkR", "DESCRIPTION"))), "")
    archive = os.path.join(lib, "sparkr.zip") if lib and not library else ""
    archive = archive if archive and os.path.isfile(archive) else ""
    if rscript and (library or archive or (probe and r_has_sparkr(rscript, env))):
        return RSetup(rscript, library, archive)
    missing = []
    if not rscript:
        source = "" if command == "Rscript" else ", from spark.r.command,"
        missing.append(f"R is not installed (no '{command}'{source} on this host's PATH)")
    if not (library or archive):
        places = [os.path.join(d, "SparkR") for d in directories]
        if lib:
            places.append(os.path.join(lib, "sparkr.zip"))
        places.append("R's own library" if rscript else "R's own library (not asked: no R)")
        missing.append("the SparkR R package is not installed (looked in " + ", ".join(places) + ")")
    return "; ".join(missing)


def r_has_sparkr(rscript: str, env: Any) -> bool:
    """Whether R loads SparkR from its own library (installed there by hand)."""
    try:
        done = subprocess.run(
            [rscript, "--vanilla", "-e", 'cat(requireNamespace("SparkR", quietly = TRUE))'],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=60,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.strip().endswith(b"TRUE")


# The R side of the channel, run by `Rscript -e`. Each request on stdin is a line "<lines> <job group>"
# then that many lines of code; the answer is what the code printed, then "\n<marker><status>\n":
# `ok`, `error <message as hex> <call as hex>` or `interrupted`. Expressions run one by one in the
# global environment and visible values are printed, as R's console does; warnings print at once.
# Interrupts (a cancel's SIGINT) are held back while a request is read and an answer written, so
# neither is ever torn; one that arrived then (a cancel crossing the statement's end) is dropped.
R_LOOP = r"""
local({
  marker <- Sys.getenv("LIVY_REPL_R_MARKER")
  Sys.unsetenv("LIVY_REPL_R_MARKER")
  hex <- function(text) paste(as.character(charToRaw(enc2utf8(paste(text, collapse = "\n")))), collapse = "")
  run <- function(code, group) tryCatch({
    if (nzchar(group)) SparkR::setJobGroup(group, paste("Livy statement", group), TRUE)
    for (expression in parse(text = code, keep.source = FALSE)) {
      shown <- withVisible(eval(expression, envir = globalenv()))
      if (shown$visible) print(shown$value)
    }
    "ok"
  }, error = function(e) paste("error", hex(conditionMessage(e)), hex(deparse(conditionCall(e), nlines = 1L))),
     interrupt = function(e) "interrupted")
  input <- file("stdin", open = "r", encoding = "UTF-8")
  request <- NULL
  receive <- function() {
    header <- readLines(input, n = 1L)
    if (length(header) == 0L) quit(save = "no")
    fields <- strsplit(header, " ", fixed = TRUE)[[1L]]
    request <<- list(code = readLines(input, n = as.integer(fields[[1L]])),
                     group = if (length(fields) > 1L) fields[[2L]] else "")
  }
  answer <- function(status) {
    flush(stdout())
    flush(stderr())
    cat("\n", marker, status, "\n", sep = "")
    flush(stdout())
  }
  options(warn = 1)
  repeat {
    tryCatch(suspendInterrupts(receive()), interrupt = function(e) NULL)
    status <- run(request$code, request$group)
    tryCatch(suspendInterrupts(answer(status)), interrupt = function(e) NULL)
  }
})
"""
# Run first in the R process: SparkR on this driver's JVM, through the RBackend whose port and secret
# it reads from EXISTING_SPARKR_BACKEND_PORT / SPARKR_BACKEND_AUTH_SECRET (as under Spark's own R
# runner); sparkR.session() then gets the SparkContext and SparkSession Python already made.
# SparkR's calls into the JVM are wrapped: a cancel's SIGINT that lands while R waits for the JVM's
# answer (R cannot hold it back during a socket read) leaves that answer unread, and every later
# call would read the answer of the call before; the wrapper reads it first (status, heartbeats,
# then the value or the error text, as SparkR's own invokeJava does).
R_PRELUDE = """\
{library_path}suppressPackageStartupMessages(library(SparkR))
local({{
  ns <- asNamespace("SparkR")
  needed <- c("invokeJava", "readInt", "readString", "readObject", ".sparkREnv")
  if (all(vapply(needed, exists, TRUE, envir = ns, inherits = FALSE))) {{
    call <- get("invokeJava", envir = ns)
    drain <- function() {{
      conn <- get(".sparkRCon", envir = ns$.sparkREnv)
      status <- ns$readInt(conn)
      while (identical(status, 1L)) status <- ns$readInt(conn)
      if (identical(status, 0L)) ns$readObject(conn) else if (length(status) == 1L) ns$readString(conn)
    }}
    unlockBinding("invokeJava", ns)
    assign("invokeJava", function(...) tryCatch(call(...), interrupt = function(e) {{
      drain()
      stop("interrupted while waiting for the JVM", call. = FALSE)
    }}), envir = ns)
    lockBinding("invokeJava", ns)
  }}
}})
spark <- sparkR.session()
sc <- SparkR:::callJStatic("org.apache.spark.sql.api.r.SQLUtils", "getJavaSparkContext", spark)
Sys.unsetenv("SPARKR_BACKEND_AUTH_SECRET")
invisible(NULL)
"""
R_EVAL_CALL = "eval(expression, envir = globalenv())"  # R_LOOP's own call: not the user's
R_CANCEL_GRACE_S = 1.0  # after cancelJobGroup, before R is interrupted (SIGINT) in the middle of R code
R_KILL_AFTER_S = 15.0  # a cancelled statement R does not give up: the R process is killed (its state is lost)


class RInterpreter:
    """An R process (Rscript) that runs `sparkr` statements on the SparkSession Python uses.

    Started at its first statement (a `sparkr` session starts it in the background at launch), so
    a session that never runs R pays nothing. Spark's RBackend (the JVM end SparkR talks to) is
    started in this JVM through Py4J; the R process connects to it with the port and secret in its
    environment, as Spark's R runner passes them. Before each statement R sets the statement's job
    group on its backend connection, so cancel and progress work as for Python; a cancelled statement
    still running R code after R_CANCEL_GRACE_S is interrupted (SIGINT to R alone, its own process
    group), and after R_KILL_AFTER_S R is killed and the next statement starts a new one.
    """

    def __init__(self, spark: Any, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.lock = threading.Lock()  # guards the start
        self.cond = threading.Condition()  # the reader thread hands answers to the statement's thread
        self.process: subprocess.Popen[bytes] | None = None
        self.backend: Any = None
        self.failure: str | None = None
        self.unpacked: str | None = None
        self.marker = f"\x1elivy-repl-r:{os.urandom(8).hex()}:".encode()
        self.pending = bytearray()  # read, not yet known to be output or a marker
        self.output = bytearray()
        self.status: str | None = None

    def start(self, setup: RSetup) -> None:
        """Start the backend and R, and attach SparkR (any thread; again after R died)."""
        with self.lock:
            if self.failure is not None or (self.process is not None and self.process.poll() is None):
                return
            started = time.monotonic()
            try:
                self._launch(setup)
                status, text = self._request(R_PRELUDE.format(library_path=self._library_path(setup)), "")
            except Exception as exc:  # no backend, or R would not start: every R statement says so
                status, text = "error", f"{type(exc).__name__}: {exc}"
            if text.strip():
                log("R: " + text.strip().replace("\n", "\nlivy-repl: R: "))
            if status != "ok":
                self.failure = f"SparkR did not start in R: {r_error_text(status, text)}"
                log(self.failure)
                self.stop()
                return
            log(f"R with SparkR ready in {time.monotonic() - started:.1f} s")

    def _library_path(self, setup: RSetup) -> str:
        library = setup.library
        if setup.archive:
            if self.unpacked is None:
                self.unpacked = tempfile.mkdtemp(prefix="livy-repl-sparkr-")
                with zipfile.ZipFile(setup.archive) as archive:
                    archive.extractall(self.unpacked)
            library = self.unpacked
        return f".libPaths(c({json.dumps(library)}, .libPaths()))\n" if library else ""

    def _launch(self, setup: RSetup) -> None:
        jvm = self.spark._jvm
        conf = self.spark.sparkContext.getConf()
        if self.backend is None:
            self.backend = jvm.org.apache.spark.api.r.RBackend()
            bound = self.backend.init()
            self.port, self.secret = bound._1(), bound._2().secret()
            threading.Thread(target=self._serve, name="sparkr-backend", daemon=True).start()
        env = {
            **os.environ,
            "EXISTING_SPARKR_BACKEND_PORT": str(self.port),
            "SPARKR_BACKEND_AUTH_SECRET": self.secret,
            "SPARKR_BACKEND_CONNECTION_TIMEOUT": conf.get("spark.r.backendConnectionTimeout", "6000"),
            "LIVY_REPL_R_MARKER": self.marker.decode(),
        }
        with self.cond:
            self.pending.clear()
            self.output.clear()
            self.status = None
        self.process = subprocess.Popen(  # a fixed argument list, no shell
            [setup.rscript, "-e", R_LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a cancel's SIGINT reaches R alone
        )
        threading.Thread(target=self._read, args=(self.process,), name="sparkr-output", daemon=True).start()

    def _serve(self) -> None:
        try:
            self.backend.run()  # until close(): blocks this thread's Py4J connection, nothing else
        except Exception as exc:  # Spark stopping
            log(f"the SparkR backend stopped: {exc}")

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        """What R writes: statement output up to LIVY_REPL_MAX_OUTPUT (+1 byte, so a cut shows), and
        the markers that end statements."""
        stream = process.stdout
        assert stream is not None
        while True:
            chunk = os.read(stream.fileno(), 65536)
            with self.cond:
                if not chunk:
                    if self.process is process and self.status is None:
                        self.status = "exited"
                    self.cond.notify_all()
                    return
                self.pending += chunk
                self._scan()

    def _scan(self) -> None:
        """Move output from `pending` to `output`; a complete marker line ends the statement (cond held)."""
        limit = self.settings.max_output + 1
        at = self.pending.find(b"\n" + self.marker)
        keep = len(self.marker) + 1 if at < 0 else len(self.pending) - at
        text = self.pending[: len(self.pending) - keep]
        self.output += text[: max(0, limit - len(self.output))]
        del self.pending[: len(text)]
        if at < 0:
            return
        end = self.pending.find(b"\n", len(self.marker) + 1)
        if end < 0:
            return
        self.status = self.pending[len(self.marker) + 1 : end].decode("utf-8", "replace")
        del self.pending[: end + 1]
        self.cond.notify_all()

    def _request(self, code: str, group: str, cancelled: Any = None) -> tuple[str, str]:
        """Send code to R; its status (ok, error ..., interrupted, exited) and what it printed."""
        process = self.process
        assert process is not None and process.stdin is not None
        lines = code.split("\n")
        try:
            process.stdin.write(f"{len(lines)} {group}\n{code}\n".encode())
            process.stdin.flush()
        except OSError:
            pass  # R is gone: the reader says so
        cancel_seen = 0.0
        interrupted = False
        with self.cond:
            while self.status is None:
                self.cond.wait(0.2)
                if cancelled is None or not cancelled():
                    continue
                now = time.monotonic()
                cancel_seen = cancel_seen or now
                if now - cancel_seen > R_KILL_AFTER_S:
                    log("R did not stop after the cancel; killing it (the next sparkr statement starts a new one)")
                    self.cond.release()
                    try:
                        self.stop()
                    finally:
                        self.cond.acquire()
                    self.status = self.status or "exited"
                elif now - cancel_seen > R_CANCEL_GRACE_S and not interrupted:
                    interrupted = True  # once is enough: R keeps it pending until it can act on it
                    with contextlib.suppress(OSError):
                        process.send_signal(signal.SIGINT)
            status, text = self.status, self.output.decode("utf-8", "replace")
            self.status = None
            self.output.clear()
        if status == "exited":
            process.wait()
            status = f"exited {process.returncode}"
        return status, text

    def run(self, code: str, group: str, setup: RSetup, cancelled: Any) -> dict[str, Any]:
        """One statement: Livy's ok or error output (without execution_count)."""
        self.start(setup)
        if self.failure is not None:
            return plain_error("SparkRUnavailable", self.failure)
        if cancelled():
            return plain_error("StatementCancelled", "cancelled before it started")
        status, text = self._request(code, group, cancelled)
        if status == "ok":
            return {"status": "ok", "data": {"text/plain": text.rstrip()}}
        if status == "interrupted":
            return {**plain_error("StatementCancelled", "the R code was interrupted"), "traceback": text.splitlines(True)}
        if status.startswith("exited"):
            message = (
                f"the R process ended (exit code {status.split()[-1]}); its variables are lost, "
                "the next sparkr statement starts a new one"
            )
            return {**plain_error("RProcessExited", message), "traceback": text.splitlines(True)}
        message, call = r_error_parts(status)
        lines = [*text.splitlines(True), f"Error in {call} : {message}\n" if call else f"Error: {message}\n"]
        return {"status": "error", "ename": "Error", "evalue": message.split("\n", 1)[0], "traceback": lines}

    def stop(self) -> None:
        """End R (its process group) and close the backend; at driver exit, or when R would not stop."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        self.stop()
        if self.backend is not None:
            with contextlib.suppress(Exception):
                self.backend.close()
        if self.unpacked is not None:
            shutil.rmtree(self.unpacked, ignore_errors=True)


def r_error_parts(status: str) -> tuple[str, str]:
    """The message and the call of an `error <hex> <hex>` status; no call for an error raised at
    the top of the statement (as R's console shows it: `Error: boom`)."""
    fields = status.split(" ")
    decoded = [bytes.fromhex(field).decode("utf-8", "replace") if field else "" for field in fields[1:3]]
    message, call = [*decoded, "", ""][:2]
    return message or "unknown error", "" if call in ("NULL", "", R_EVAL_CALL) else call


def r_error_text(status: str, text: str) -> str:
    if status.startswith("error"):
        message, _ = r_error_parts(status)
        return message
    return f"{status}: {text.strip()[-2000:]}"


# ---------------------------------------------------------------------------------------------
# HTTP


def _number(
    query: dict[str, list[str]], name: str, default: Any, *, kind: type = float, low: float = 0, high: float = MAX_WAIT_S
) -> Any:
    if name not in query:
        return default
    raw = query[name][-1]
    try:
        value = kind(raw)
    except ValueError:
        raise RequestError(400, f"{name} must be a number, not {raw!r}") from None
    if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
        raise RequestError(400, f"{name} must be between {low} and {high}")
    return value


class Handler(BaseHTTPRequestHandler):
    """The driver's HTTP API (one thread per connection; keep-alive)."""

    protocol_version = "HTTP/1.1"
    server_version = "livy-repl"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = MAX_WAIT_S + 60  # a keep-alive connection whose peer vanished does not hold a thread forever
    repl: Repl
    expected: bytes

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: the server polls often, and the log is the user's."""

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        given = self.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, self.expected):
            self.close_connection = True  # the body, if any, is not read
            self._send(401, {"msg": "missing or wrong Authorization: Bearer <secret>"})
            return
        self.repl.touch(started=True)
        after = None
        try:
            status, body, after = self._route(method)
        except RequestError as err:
            status, body = err.status, {"msg": err.message}
        except Exception as exc:
            log(f"error answering {method} {self.path}: {traceback.format_exc()}")
            status, body = 500, {"msg": f"internal error in the REPL driver: {type(exc).__name__}"}
        finally:
            self.repl.touch(started=False)
        self._send(status, body)
        if after is not None:
            after()

    def _body(self) -> dict[str, Any]:
        """The JSON object sent (read whatever the method, so a keep-alive connection stays in step)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError(400, "Content-Length must be a number of bytes")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise RequestError(413, f"request body over {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise RequestError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    def _route(self, method: str) -> tuple[int, Any, Any]:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        parts = [part for part in url.path.split("/") if part]
        repl = self.repl
        body = self._body()
        if parts == ["status"] and method == "GET":
            version = _number(query, "version", None, kind=int, low=-1, high=2**63)
            return 200, repl.status(_number(query, "wait", 0.0), version), None
        if parts == ["statements"] and method == "GET":
            start = _number(query, "from", 0, kind=int, high=2**31)
            size = _number(query, "size", None, kind=int, high=2**31)
            order = query.get("order", ["asc"])[-1]
            if order not in ("asc", "desc"):
                raise RequestError(400, "order must be asc or desc")
            return 200, repl.list_statements(start, size, order == "desc"), None
        if parts == ["statements"] and method == "POST":
            code = body.get("code")
            if not isinstance(code, str):
                raise RequestError(400, "code must be a string")
            return 201, repl.submit(code, body.get("kind")), None
        if len(parts) == 2 and parts[0] == "statements" and method == "GET":
            return 200, repl.wait_statement(_statement_id(parts[1]), _number(query, "wait", 0.0)), None
        if len(parts) == 3 and parts[0] == "statements" and parts[2] == "cancel" and method == "POST":
            repl.cancel(_statement_id(parts[1]))
            return 200, {"msg": "canceled"}, None
        if parts == ["completion"] and method == "POST":
            code, cursor = body.get("code", ""), body.get("cursor")
            if not isinstance(code, str):
                raise RequestError(400, "code must be a string")
            if cursor is None:
                cursor = len(code)
            if not isinstance(cursor, int) or isinstance(cursor, bool) or not 0 <= cursor <= len(code):
                raise RequestError(400, "cursor must be a position in code")
            return 200, {"candidates": repl.complete(code, cursor, body.get("kind"))}, None
        if parts == ["shutdown"] and method == "POST":
            return 200, {"msg": "shutting down"}, lambda: repl.request_stop("shutdown requested")
        if parts in (["status"], ["statements"], ["completion"], ["shutdown"]) or (parts and parts[0] == "statements"):
            raise RequestError(405, f"{method} is not allowed on {url.path}")
        raise RequestError(404, f"no such path: {url.path}")

    def _send(self, status: int, body: Any) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


def _statement_id(raw: str) -> int:
    if not raw.isdigit():
        raise RequestError(404, f"statement {raw!r} not found")
    return int(raw)


def serve(repl: Repl, settings: Settings) -> ThreadingHTTPServer:
    """Listen on an ephemeral port of LIVY_REPL_BIND, in background threads."""
    handler = type("BoundHandler", (Handler,), {"repl": repl, "expected": f"Bearer {settings.secret}".encode()})
    family = socket.AF_INET6 if ":" in settings.bind else socket.AF_INET
    server_class = type(
        "Server", (ThreadingHTTPServer,), {"address_family": family, "request_queue_size": 64, "daemon_threads": True}
    )
    server = server_class((settings.bind, 0), handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def advertised_host(bind: str, spark: Any) -> str:
    """The host the server reaches us at: the bind address, or the driver's host when bound to all."""
    if bind not in ("0.0.0.0", "::", ""):
        return f"[{bind}]" if ":" in bind else bind
    if spark is not None:
        host = spark.sparkContext.getConf().get("spark.driver.host", None)
        if host:
            return host
    return socket.getfqdn()


def call_back(settings: Settings, repl: Repl, address: str, spark: Any) -> None:
    """Tell the server where we listen; retried with backoff. A 4xx means it disowns us: stop."""
    sc = spark.sparkContext if spark is not None else None
    payload = json.dumps(
        {"address": address, "appId": sc.applicationId if sc else None, "sparkUiUrl": sc.uiWebUrl if sc else None}
    ).encode()
    if not settings.callback:
        log("no LIVY_REPL_CALLBACK: nobody is told where this driver listens")
        return
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked in Settings
        settings.callback,
        data=payload,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {settings.secret}",
        },
    )
    for attempt, delay in enumerate((0.5, 1, 2, 4, 8, 15, 0)):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - checked in Settings
                response.read()
            return
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500:
                repl.request_stop(f"the server answered the callback with {err.code}")
                return
            problem = f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            problem = str(err)
        log(f"callback attempt {attempt + 1} failed ({problem})" + (f"; retrying in {delay} s" if delay else ""))
        time.sleep(delay)
    log("the server never answered the callback; the idle timeout will end this driver")


def watch_idle(repl: Repl, timeout: float) -> None:
    """Exit when no authenticated request came for `timeout` seconds: no server wants this driver."""
    while repl.stopping is None:
        idle = repl.idle_for()
        if idle >= timeout:
            repl.request_stop(f"no authenticated request for {timeout:g} s (LIVY_REPL_IDLE_TIMEOUT)")
            return
        time.sleep(min(1.0, max(0.05, timeout - idle)))


def start_spark(settings: Settings) -> tuple[Any, str | None]:
    """The SparkSession, and the class directory for Scala statements we made for it (to remove at exit).

    spark.repl.class.outputDir must be set before the SparkContext starts, whatever the session's
    kind (any session may run a `spark` statement); it costs an empty directory.
    """
    if settings.no_spark:
        return None, None
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    class_dir = None
    if not SparkConf().get("spark.repl.class.outputDir", None):
        class_dir = tempfile.mkdtemp(prefix="livy-repl-classes-")
        builder = builder.config("spark.repl.class.outputDir", class_dir)
    return builder.getOrCreate(), class_dir


def main() -> None:
    settings = Settings(dict(os.environ))
    os.environ.pop("LIVY_REPL_SECRET")  # statements (and what they start) need not see it
    spark, class_dir = start_spark(settings)
    repl = Repl(settings, spark)
    if repl.kind == "spark" and repl.scala is not None:  # its first statement need not wait for the compiler
        threading.Thread(target=repl.scala.start, name="scala-start", daemon=True).start()
    if repl.kind == "sparkr" and repl.r is not None:  # nor for R and SparkR, when this host has them
        threading.Thread(target=repl.start_r, name="sparkr-start", daemon=True).start()
    sys.stdin = io.StringIO()  # input() in a statement fails at once instead of hanging
    # Spark 4 warns on every DataFrame.toJSON(); in a statement's text it breaks the clients that print
    # toJSON rows and parse the text back (pylivy's download, sparkmagic's %%sql), so it is not shown.
    warnings.filterwarnings("ignore", message="The return type of DataFrame.toJSON", category=UserWarning)
    repl.streams = (Capture(sys.stdout, repl.sink), Capture(sys.stderr, repl.sink))
    signal.signal(CANCEL_SIGNAL, repl.on_cancel_signal)
    server = serve(repl, settings)
    address = f"http://{advertised_host(settings.bind, spark)}:{server.server_address[1]}"
    log(f"listening on {address}")
    threading.Thread(target=call_back, args=(settings, repl, address, spark), name="callback", daemon=True).start()
    threading.Thread(target=watch_idle, args=(repl, settings.idle_timeout), name="idle", daemon=True).start()
    repl.run_forever()
    if repl.r is not None:
        repl.r.close()
    if spark is not None:
        spark.stop()
    if class_dir is not None:
        shutil.rmtree(class_dir, ignore_errors=True)
    log("stopped")
    server.server_close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # user code may have left non-daemon threads behind; nothing else is owed


if __name__ == "__main__":
    main()
