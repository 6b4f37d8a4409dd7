"""What every Livy operator does the same way: a deterministic name per task instance, a request body
from operator arguments, and the deadlines a deferred task keeps (Airflow 3's execution_timeout does not
cover deferred time). LivyBatchOperator (livy.py) and LivySessionOperator (livy_session.py) build on it.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import timedelta
from typing import Any

from airflow.sdk import Context

from airflow_provider_livy.protocol import INT, NON_NEGATIVE_INT, STR_LIST, STR_MAP

DEFER_TIMEOUT_GRACE = 120.0  # Airflow's own deferral timeout, a backstop behind the trigger's deadline
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._:+@=-]+")
FAIL_METHOD = "__fail__"  # what Airflow resumes a deferred task with when its trigger timed out or failed


def batch_name(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The same name for every try of one task instance, unique across task instances.

    Readable (airflow-<dag>-<task>-<hash>) and always valid for Livy: not all digits, no '/',
    at most 255 characters. The hash covers the full ids, so truncating the readable part is safe.
    """
    digest = hashlib.sha256(f"{dag_id}\0{task_id}\0{run_id}\0{map_index}".encode()).hexdigest()[:16]
    readable = _UNSAFE_NAME_CHARS.sub("_", f"{dag_id}-{task_id}")[:180]
    suffix = "" if map_index < 0 else f"-{map_index}"
    return f"airflow-{readable}{suffix}-{digest}"


def _conf_value(value: Any) -> Any:
    """Spark conf values are strings; write booleans the way Spark spells them."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (int, float)) else value


def _coerce(kind: str, value: Any) -> Any:
    """Accept what templating and Python habits produce (numbers as strings, numbers in conf)."""
    if kind in (INT, NON_NEGATIVE_INT) and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if kind == STR_LIST and isinstance(value, (tuple, list)):
        return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
    if kind == STR_MAP and isinstance(value, dict):
        return {k: _conf_value(v) for k, v in value.items()}
    return value


def request_body(arguments: dict[str, Any], table: dict[str, str], fields: dict[str, str]) -> dict[str, Any]:
    """Operator arguments -> request fields (`table` maps one to the other), coerced, not yet validated."""
    return {table[arg]: _coerce(fields[table[arg]], value) for arg, value in arguments.items()}


def execution_deadline(execution_timeout: timedelta | None, context: Context) -> float | None:
    """When the task must end (epoch s). execution_timeout does not cover deferred time in Airflow 3,
    so the trigger enforces it."""
    if execution_timeout is None:
        return None
    start = getattr(context["ti"], "start_date", None)
    started = start.timestamp() if start is not None else time.time()
    return started + execution_timeout.total_seconds()


def defer_timeout(deadline: float | None) -> timedelta | None:
    """Airflow's own deferral timeout: a backstop behind the trigger's deadline."""
    return None if deadline is None else timedelta(seconds=max(deadline - time.time(), 0) + DEFER_TIMEOUT_GRACE)
