"""The Livy batch protocol, defined once for the server and the Airflow side.

Both the server (to validate what it receives) and the hook/operator (to validate before
sending and to interpret what comes back) import from here, so the two never drift apart.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

# Batch states. `recovering` is what a batch shows while a restarted server re-attaches to it.
STARTING = "starting"
RECOVERING = "recovering"
RUNNING = "running"
SUCCESS = "success"
DEAD = "dead"
KILLED = "killed"
ERROR = "error"  # interactive sessions only, but clients must treat it as terminal

BATCH_STATES: tuple[str, ...] = (STARTING, RECOVERING, RUNNING, SUCCESS, DEAD, KILLED)
TERMINAL_STATES: frozenset[str] = frozenset({SUCCESS, DEAD, KILLED, ERROR})
ACTIVE_STATES: frozenset[str] = frozenset({STARTING, RECOVERING, RUNNING})
FAILED_STATES: frozenset[str] = frozenset({DEAD, KILLED, ERROR})

# The header Livy's CSRF protection asks for on POST and DELETE. Our hook always sends it.
CSRF_HEADER = "X-Requested-By"

# GET /batches/{id}/state?wait=S: our server holds the answer until the batch's state changes or S
# seconds pass (at most MAX_STATE_WAIT), so a poller notices a job's end at once instead of up to an
# interval late. Apache Livy ignores the parameter and answers at once; clients then sleep the rest.
STATE_WAIT_PARAM = "wait"
MAX_STATE_WAIT = 10.0

BATCHES_PATH = "/batches"
SESSIONS_PATH = "/sessions"  # Livy's interactive sessions; our server has none (404)
DEFAULT_PORT = 8998
DEFAULT_LOG_PAGE = 100

# Request body fields of POST /batches and the JSON type each must have.
STR, INT, STR_LIST, STR_MAP = "string", "integer", "list of strings", "map of strings"
BATCH_REQUEST_FIELDS: dict[str, str] = {
    "file": STR,
    "className": STR,
    "args": STR_LIST,
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
    "proxyUser": STR,
    "conf": STR_MAP,
}
MEMORY_FIELDS = ("driverMemory", "executorMemory")
POSITIVE_INT_FIELDS = ("driverCores", "executorCores", "numExecutors")

# LivyBatchOperator argument -> request field; the operator's signature follows this table.
OPERATOR_ARGUMENTS: dict[str, str] = {
    "file": "file",
    "class_name": "className",
    "args": "args",
    "conf": "conf",
    "jars": "jars",
    "py_files": "pyFiles",
    "files": "files",
    "archives": "archives",
    "driver_memory": "driverMemory",
    "driver_cores": "driverCores",
    "executor_memory": "executorMemory",
    "executor_cores": "executorCores",
    "num_executors": "numExecutors",
    "queue": "queue",
    "name": "name",
    "proxy_user": "proxyUser",
}

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


class BatchRequestError(ValueError):
    """A batch request that Livy would answer with 400 "Rejected, Reason: ..."."""


def _type_error(field: str, kind: str, value: Any) -> BatchRequestError:
    return BatchRequestError(f"field '{field}' must be a {kind}, got {type(value).__name__}: {value!r}")


def _check_type(field: str, kind: str, value: Any) -> None:
    if kind == STR:
        ok = isinstance(value, str)
    elif kind == INT:
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


def validate_batch_request(body: Any) -> dict[str, Any]:
    """Check a POST /batches body and return it without null fields.

    Raises BatchRequestError with a message fit for a 400 answer or an Airflow error.
    """
    if not isinstance(body, dict):
        raise BatchRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(BATCH_REQUEST_FIELDS))
    if unknown:
        raise BatchRequestError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(BATCH_REQUEST_FIELDS)}")
    clean = {k: v for k, v in body.items() if v is not None}
    if not clean.get("file"):
        raise BatchRequestError("field 'file' is required")
    for field, value in clean.items():
        _check_type(field, BATCH_REQUEST_FIELDS[field], value)
        if not all(_fits_argv(text) for text in _strings(value)):
            raise BatchRequestError(f"field '{field}' has a NUL character or invalid Unicode: no process argument can carry it")
    for field in MEMORY_FIELDS:
        if field in clean and not _MEMORY_RE.match(clean[field]):
            raise BatchRequestError(f"field '{field}' must be a size such as 512m or 2g, got {clean[field]!r}")
    for field in POSITIVE_INT_FIELDS:
        if field in clean and clean[field] < 1:
            raise BatchRequestError(f"field '{field}' must be at least 1, got {clean[field]}")
    name = clean.get("name")
    if name is not None:
        if not name.strip():
            raise BatchRequestError("field 'name' must not be blank")
        if name.isdigit():
            raise BatchRequestError(f"name {name!r} is all digits and would be mistaken for a batch id")
        if len(name) > MAX_NAME_LENGTH or any(c in name for c in "\r\n\x00/"):
            raise BatchRequestError(f"name {name!r} is longer than {MAX_NAME_LENGTH} characters or has '/' or control characters")
    return clean


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES
