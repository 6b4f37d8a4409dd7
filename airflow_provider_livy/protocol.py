"""The Livy protocol (batches and interactive sessions), defined once for the server and the Airflow side.

Both the server (to validate what it receives) and the hook/operator (to validate before
sending and to interpret what comes back) import from here, so the two never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypedDict

# Session states, Livy's set. `recovering` is what a session shows while a restarted server re-attaches to it.
NOT_STARTED = "not_started"
STARTING = "starting"
RECOVERING = "recovering"
RUNNING = "running"  # batches only
IDLE = "idle"  # interactive: the driver is up and runs no statement
BUSY = "busy"  # interactive: a statement runs
SHUTTING_DOWN = "shutting_down"
SUCCESS = "success"  # batches only
DEAD = "dead"
KILLED = "killed"
ERROR = "error"  # interactive sessions only, but clients must treat it as terminal

BATCH_STATES: tuple[str, ...] = (STARTING, RECOVERING, RUNNING, SUCCESS, DEAD, KILLED)
# Every state an interactive session may show; sparkmagic raises on anything else (`running` included).
SESSION_STATES: tuple[str, ...] = (NOT_STARTED, STARTING, RECOVERING, IDLE, BUSY, SHUTTING_DOWN, ERROR, DEAD, KILLED, SUCCESS)
ALL_STATES: tuple[str, ...] = tuple(dict.fromkeys(BATCH_STATES + SESSION_STATES))
TERMINAL_STATES: frozenset[str] = frozenset({SUCCESS, DEAD, KILLED, ERROR})
ACTIVE_STATES: frozenset[str] = frozenset({NOT_STARTED, STARTING, RECOVERING, RUNNING, IDLE, BUSY, SHUTTING_DOWN})
FAILED_STATES: frozenset[str] = frozenset({DEAD, KILLED, ERROR})

# The header Livy's CSRF protection asks for on POST and DELETE. Our hook always sends it.
CSRF_HEADER = "X-Requested-By"

# GET /batches/{id}/state?wait=S: our server holds the answer until the batch's state changes or S
# seconds pass (at most MAX_STATE_WAIT), so a poller notices a job's end at once instead of up to an
# interval late. Apache Livy ignores the parameter and answers at once; clients then sleep the rest.
STATE_WAIT_PARAM = "wait"
MAX_STATE_WAIT = 10.0

BATCHES_PATH = "/batches"
SESSIONS_PATH = "/sessions"  # Livy's interactive sessions
READY_PATH = "/ready"  # a group's readiness probe: {"role": "leader", "leader": url, "epoch": N} or a standby's 503


@dataclass(frozen=True)
class Family:
    """A family of sessions as the protocol knows it: batches, or interactive sessions. Each has its own
    ids, routes and store directory (as in Livy); the server builds its lifecycle families on these."""

    name: str  # "batch", "interactive": the store's directory (v1/batch, v1/interactive)
    path: str  # its routes: /batches, /sessions
    word: str  # "batch", "session": in messages, log lines and the maintenance sweep's record keys
    states: tuple[str, ...]  # every state it may show
    optional: bool = False  # a server may not have it (a 404 on its listing: none held)

    @property
    def plural(self) -> str:
        """ "batches", "sessions": as its path names it."""
        return self.path.strip("/")


BATCHES = Family("batch", BATCHES_PATH, "batch", BATCH_STATES)
SESSIONS = Family("interactive", SESSIONS_PATH, "session", SESSION_STATES, optional=True)
FAMILIES: tuple[Family, ...] = (BATCHES, SESSIONS)
DEFAULT_PORT = 8998
DEFAULT_LOG_PAGE = 100

STR, INT, STR_LIST, STR_MAP = "string", "integer", "list of strings", "map of strings"
# What spark-submit takes for any driver, batch or interactive session: one list for both request shapes.
SUBMIT_FIELDS: dict[str, str] = {
    "jars": STR_LIST,
    "pyFiles": STR_LIST,
    "files": STR_LIST,
    "archives": STR_LIST,
    "driverMemory": STR,
    "driverCores": INT,
    "executorMemory": STR,
    "executorCores": INT,
    "numExecutors": INT,
    "queue": STR,
    "name": STR,
}
# Request body fields of POST /batches and the JSON type each must have.
BATCH_REQUEST_FIELDS: dict[str, str] = {
    "file": STR,
    "className": STR,
    "args": STR_LIST,
    **SUBMIT_FIELDS,
    "proxyUser": STR,
    "conf": STR_MAP,
}
MEMORY_FIELDS = ("driverMemory", "executorMemory")
POSITIVE_INT_FIELDS = ("driverCores", "executorCores", "numExecutors")


def argument_name(field: str) -> str:
    """A request field as a Python argument: pyFiles -> py_files, heartbeatTimeoutInSecond -> heartbeat_timeout_in_second."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", field).lower()


# LivyBatchOperator argument -> request field; the operator's signature follows this table.
OPERATOR_ARGUMENTS: dict[str, str] = {argument_name(field): field for field in BATCH_REQUEST_FIELDS}

# --- interactive sessions ---------------------------------------------------------------
# Session kinds. Livy's aliases are accepted and mean the same interpreter.
PYSPARK, SQL, SPARK, SPARKR, SHARED = "pyspark", "sql", "spark", "sparkr", "shared"
KIND_ALIASES: dict[str, str] = {"python": PYSPARK, "scala": SPARK, "r": SPARKR}
KNOWN_KINDS: tuple[str, ...] = (PYSPARK, SQL, SPARK, SPARKR, SHARED)
# Livy's default kind is `shared`, whose statements must each name their kind; ours stays pyspark so a
# client that sends no kind at all keeps working (every session takes per-statement pyspark, spark, sql).
DEFAULT_KIND = PYSPARK
DURATION = "duration"  # a string with a unit: "600s", "10m", "1h", "1d"
NON_NEGATIVE_INT = "non-negative integer"
SESSION_REQUEST_FIELDS: dict[str, str] = {
    "kind": STR,
    "proxyUser": STR,
    **SUBMIT_FIELDS,
    "conf": STR_MAP,
    "heartbeatTimeoutInSecond": NON_NEGATIVE_INT,  # 0 = off; sparkmagic sends 60
    "ttl": DURATION,  # absolute lifetime (Livy 0.9 meaning)
    "idleTimeout": DURATION,  # else livy.server.session.timeout
}
# LivySessionOperator argument -> request field; the operator's signature follows this table.
SESSION_OPERATOR_ARGUMENTS: dict[str, str] = {argument_name(field): field for field in SESSION_REQUEST_FIELDS}
RESOURCE_FIELDS = ("driverMemory", "driverCores", "executorMemory", "executorCores", "numExecutors", "queue")
DEFAULT_SESSION_NAME = "livy-session-{id}"  # the Spark application name when the request has none

# Statements: waiting -> running -> available; cancelling -> cancelled. A failed statement is
# `available` with output.status = "error" (there is no error state).
WAITING, STATEMENT_RUNNING, AVAILABLE, CANCELLING, CANCELLED = "waiting", "running", "available", "cancelling", "cancelled"
STATEMENT_STATES: tuple[str, ...] = (WAITING, STATEMENT_RUNNING, AVAILABLE, CANCELLING, CANCELLED)
STATEMENT_DONE_STATES: frozenset[str] = frozenset({AVAILABLE, CANCELLED})
STATEMENT_KINDS: tuple[str, ...] = (PYSPARK, SQL, SPARK, SPARKR)  # per-statement `kind` any session accepts
STATEMENT_REQUEST_FIELDS: dict[str, str] = {"code": STR, "kind": STR}
COMPLETION_REQUEST_FIELDS: dict[str, str] = {"code": STR, "kind": STR, "cursor": NON_NEGATIVE_INT}
# Output mime types (Livy's).
TEXT_PLAIN = "text/plain"
APPLICATION_JSON = "application/json"
TABLE_JSON = "application/vnd.livy.table.v1+json"
OUTPUT_OK, OUTPUT_ERROR = "ok", "error"

# Spark's size strings as spark-submit accepts them: "512m", "2g", "1024" (bytes), "4gb".
_MEMORY_RE = re.compile(r"^[0-9]+([kmgtp]b?|b)?$", re.IGNORECASE)
MAX_NAME_LENGTH = 255


class AppInfo(TypedDict):
    driverLogUrl: str | None
    sparkUiUrl: str | None
    executorLogUrls: str | None


class BatchView(TypedDict, total=False):
    """GET /batches/{id}. Livy's keys first; the rest are ours and tolerated by Livy clients."""

    id: int
    name: str | None
    owner: str | None
    proxyUser: str | None
    state: str
    appId: str | None
    appInfo: AppInfo
    log: list[str]
    createdAt: float  # wall-clock seconds since the epoch
    finishedAt: float | None
    expiresAt: float | None  # when the server will forget a finished batch


class SessionView(TypedDict, total=False):
    """GET /sessions/{id}: Livy's keys, the resource fields echoed back, then ours."""

    id: int
    name: str | None
    appId: str | None
    owner: str | None
    proxyUser: str | None
    state: str
    kind: str
    appInfo: AppInfo
    log: list[str]
    driverMemory: str | None
    driverCores: int | None
    executorMemory: str | None
    executorCores: int | None
    numExecutors: int | None
    queue: str | None
    conf: dict[str, str]
    heartbeatTimeoutInSecond: int
    ttl: str | None
    idleTimeout: str | None
    createdAt: float  # wall-clock seconds since the epoch
    lastActivityAt: float
    finishedAt: float | None
    expiresAt: float | None  # when idleness or ttl will end it (active), or when it is forgotten (ended)


class StatementOutput(TypedDict, total=False):
    status: str  # "ok" | "error"
    execution_count: int
    data: dict[str, Any]  # ok: mime -> value
    ename: str  # error
    evalue: str
    traceback: list[str]


class Statement(TypedDict):
    """A statement exactly as Livy shows it (times in epoch ms, 0 when unset)."""

    id: int
    code: str
    state: str
    output: StatementOutput | None
    progress: float
    started: int
    completed: int


class RequestError(ValueError):
    """A request that Livy would answer with 400 "Rejected, Reason: ..." (batches, sessions, statements alike)."""


BatchRequestError = RequestError  # the name the Airflow side imports


def _type_error(field: str, kind: str, value: Any) -> RequestError:
    return RequestError(f"field '{field}' must be a {kind}, got {type(value).__name__}: {value!r}")


def _check_type(field: str, kind: str, value: Any) -> None:
    if kind in (STR, DURATION):
        ok = isinstance(value, str)
    elif kind in (INT, NON_NEGATIVE_INT):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == STR_LIST:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
    if not ok:
        raise _type_error(field, kind, value)


def _strings(value: Any) -> list[str]:
    """Every string in a field's value: itself, list items, or map keys and values."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [*value, *value.values()]
    return []


def _fits_argv(text: str) -> bool:
    """Whether the text can be a process argument: UTF-8 encodable (no lone surrogates), no NUL."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _validate_fields(body: Any, fields: dict[str, str], what: str) -> dict[str, Any]:
    """Types, process-argument safety, sizes and names, common to every request; null fields dropped."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise RequestError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    clean = {k: v for k, v in body.items() if v is not None}
    for field, value in clean.items():
        _check_type(field, fields[field], value)
        if not all(_fits_argv(text) for text in _strings(value)):
            raise RequestError(f"field '{field}' has a NUL character or invalid Unicode: no process argument can carry it")
        if fields[field] == NON_NEGATIVE_INT and value < 0:
            raise RequestError(f"field '{field}' must be 0 or more, got {value}")
        if fields[field] == DURATION and not (duration_seconds(value) or 0) > 0:
            raise RequestError(f"field '{field}' must be a positive duration with a unit (600s, 10m, 1h), got {value!r}")
    for field in MEMORY_FIELDS:
        if field in clean and not _MEMORY_RE.match(clean[field]):
            raise RequestError(f"field '{field}' must be a size such as 512m or 2g, got {clean[field]!r}")
    for field in POSITIVE_INT_FIELDS:
        if field in clean and clean[field] < 1:
            raise RequestError(f"field '{field}' must be at least 1, got {clean[field]}")
    name = clean.get("name")
    if name is not None:
        if not name.strip():
            raise RequestError("field 'name' must not be blank")
        if name.isdigit():
            raise RequestError(f"name {name!r} is all digits and would be mistaken for a {what} id")
        if len(name) > MAX_NAME_LENGTH or any(c in name for c in "\r\n\x00/"):
            raise RequestError(f"name {name!r} is longer than {MAX_NAME_LENGTH} characters or has '/' or control characters")
    return clean


def validate_batch_request(body: Any) -> dict[str, Any]:
    """Check a POST /batches body and return it without null fields.

    Raises RequestError with a message fit for a 400 answer or an Airflow error.
    """
    clean = _validate_fields(body, BATCH_REQUEST_FIELDS, "batch")
    if not clean.get("file"):
        raise RequestError("field 'file' is required")
    return clean


def session_kind(kind: str) -> str:
    """Livy's kind name for a kind or alias; RequestError for an unknown one."""
    name = KIND_ALIASES.get(kind, kind)
    if name not in KNOWN_KINDS:
        known = ", ".join([*KNOWN_KINDS, *KIND_ALIASES])
        raise RequestError(f"unknown session kind {kind!r}; known: {known}")
    return name


def validate_session_request(body: Any) -> dict[str, Any]:
    """Check a POST /sessions body; return it without nulls, `kind` normalised (aliases resolved, default set).

    Kinds Livy knows but this server does not run yet (spark, shared; sparkr, which the server
    checks further) pass here: the server answers them with its own 400 naming what is missing.
    """
    clean = _validate_fields(body, SESSION_REQUEST_FIELDS, "session")
    clean["kind"] = session_kind(clean.get("kind", DEFAULT_KIND))
    return clean


def validate_statement_request(body: Any, fields: dict[str, str] = STATEMENT_REQUEST_FIELDS) -> dict[str, Any]:
    """POST /sessions/{id}/statements: `code` required, `kind` optional (pyspark, spark or sql; aliases accepted).

    A `shared` session needs the kind; the server checks that, knowing the session."""
    clean = _validate_fields(body, fields, "statement")
    if "code" not in clean:
        raise RequestError("field 'code' is required")
    if "kind" in clean:
        clean["kind"] = session_kind(clean["kind"])
        if clean["kind"] not in STATEMENT_KINDS:
            raise RequestError(f"statement kind {clean['kind']!r} is not supported; supported: {', '.join(STATEMENT_KINDS)}")
    return clean


def validate_completion_request(body: Any) -> dict[str, Any]:
    """POST /sessions/{id}/completion: `code`, optional `kind` and `cursor` (default: the end of the code)."""
    clean = validate_statement_request(body, COMPLETION_REQUEST_FIELDS)
    clean.setdefault("cursor", len(clean["code"]))
    return clean


_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|min|h|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def output_value(output: StatementOutput | None) -> Any:
    """What a successful statement produced, as a client wants it: the application/json value (sql
    results: {"schema", "data"}), else the text/plain string, else the %table value, else None."""
    data = (output or {}).get("data") or {}
    for mime in (APPLICATION_JSON, TEXT_PLAIN, TABLE_JSON):
        if mime in data:
            return data[mime]
    return None


def output_error(output: StatementOutput | None) -> str | None:
    """`ename: evalue` and the traceback of a failed statement; None for a good one."""
    if not output or output.get("status") != OUTPUT_ERROR:
        return None
    traceback = "".join(line if line.endswith("\n") else line + "\n" for line in output.get("traceback") or [])
    return f"{output.get('ename') or 'Error'}: {output.get('evalue') or ''}" + (f"\n{traceback.rstrip()}" if traceback else "")


def duration_seconds(text: str) -> float | None:
    """'600s', '10m', '1h', '1.5d' -> seconds; None for anything else, a bare number included
    (its unit is ambiguous in Livy, which reads some as milliseconds)."""
    match = _DURATION_RE.match(text)
    return None if match is None else float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
