"""What the official provider's hooks (apache-airflow-providers-apache-livy) take and return, in our terms.

`BatchState`, the official `build_post_batch_body` arguments, HttpHook's `extra_options`, an `auth_type`
class and tenacity `retry_args`: both our hooks accept them, so code written against the official hooks
runs unchanged (README, "Moving from apache-airflow-providers-apache-livy").
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

import tenacity
from airflow.sdk import conf

from airflow_provider_livy.hooks.arguments import build_request
from airflow_provider_livy.hooks.connection import LivyConfigError, LivySettings

T = TypeVar("T")
OFFICIAL_SIZE = re.compile(r"\d+[kmgt]b?", re.IGNORECASE)  # the sizes the official body builder takes


class BatchState(StrEnum):
    """Batch and session states, as the official enum names them (and `recovering`, which our server reports
    while it re-attaches to a driver after a restart). A str: `state == "success"` holds as well."""

    NOT_STARTED = "not_started"
    STARTING = "starting"
    RECOVERING = "recovering"
    RUNNING = "running"
    IDLE = "idle"
    BUSY = "busy"
    SHUTTING_DOWN = "shutting_down"
    ERROR = "error"
    DEAD = "dead"
    KILLED = "killed"
    SUCCESS = "success"


TERMINAL_BATCH_STATES = frozenset({BatchState.SUCCESS, BatchState.DEAD, BatchState.KILLED, BatchState.ERROR})


def default_deferrable() -> bool:
    """`[operators] default_deferrable`, read when the task is made (as Airflow's own operators do)."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def batch_state(value: str) -> BatchState | str:
    """The state as a BatchState; a state this version does not know stays the plain string."""
    try:
        return BatchState(value)
    except ValueError:
        return value


def session_id_of(session_id: int | str) -> int | str:
    """The official hooks' check of a batch id: TypeError unless it reads as an integer."""
    try:
        int(session_id)
    except (TypeError, ValueError):
        raise TypeError("'session_id' must be an integer") from None
    return session_id


def post_batch_body(  # noqa: PLR0917 (the official signature takes them positionally)
    file: str,
    args: Sequence[str | int | float] | None = None,
    class_name: str | None = None,
    jars: list[str] | None = None,
    py_files: list[str] | None = None,
    files: list[str] | None = None,
    archives: list[str] | None = None,
    name: str | None = None,
    driver_memory: str | None = None,
    driver_cores: int | str | None = None,
    executor_memory: str | None = None,
    executor_cores: int | None = None,
    num_executors: int | str | None = None,
    queue: str | None = None,
    proxy_user: str | None = None,
    conf: dict[Any, Any] | None = None,
) -> dict[str, Any]:
    """The official `build_post_batch_body`: empty arguments are left out, numbers in `args` become strings.
    Validated by the protocol, and refused where the official one refuses (a memory size without its unit, a
    conf value that is empty or neither a string nor an int): a ValueError either way."""
    arguments = {key: value for key, value in locals().items() if value not in (None, "", [], {}, ())}
    body = build_request(arguments)
    for key in ("driver_memory", "executor_memory"):
        if key in arguments and not (isinstance(arguments[key], str) and OFFICIAL_SIZE.fullmatch(arguments[key])):
            raise ValueError(f"Invalid java size format for string'{arguments[key]}'")
    if "conf" in arguments and not all(isinstance(v, (str, int)) and v != "" for v in dict(arguments["conf"]).values()):
        raise ValueError("'conf' values must be either strings or ints")
    return body


def with_options(settings: LivySettings, extra_options: Mapping[str, Any], endpoint_prefix: str | None) -> LivySettings:
    """A hook's `endpoint_prefix` (added to the connection's URL) and the HttpHook `extra_options` that mean
    something here: `verify` (a bool or a CA bundle path) and `timeout` (seconds)."""
    changes: dict[str, Any] = {}
    if endpoint_prefix and endpoint_prefix.strip("/"):
        changes["base_urls"] = tuple(f"{url}/{endpoint_prefix.strip('/')}" for url in settings.base_urls)
    if "verify" in extra_options:
        changes["verify"] = extra_options["verify"]
    if extra_options.get("timeout") is not None:
        changes["timeout"] = float(extra_options["timeout"])
    return dataclasses.replace(settings, **changes) if changes else settings


def auth_class(auth_type: Any) -> type | None:
    """An `auth_type` as a class: the class itself, or its dotted path (how a trigger carries it)."""
    if auth_type is None or isinstance(auth_type, type):
        return auth_type
    module_name, _, class_name = str(auth_type).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise LivyConfigError(f"cannot import auth_type {auth_type!r}: {err}") from None


def dotted(auth_type: Any) -> str | None:
    """An `auth_type` as its dotted path, for a trigger's stored arguments."""
    cls = auth_class(auth_type)
    return None if cls is None else f"{cls.__module__}.{cls.__qualname__}"


def auth_from_type(auth_type: Any, base: type, login: str | None, password: str | None) -> Any:
    """HttpHook's rule: `auth_type(login, password)` when the connection has a login, else `auth_type()`.
    `base` is the auth base class of the HTTP library in use."""
    cls = auth_class(auth_type)
    if cls is None:
        return None
    if not issubclass(cls, base):
        raise LivyConfigError(f"auth_type {dotted(cls)} is not a {base.__module__}.{base.__qualname__} subclass")
    return cls(login, password or "") if login else cls()


def retries_from(retry_args: Mapping[str, Any] | None) -> int | None:
    """The retry count a tenacity `stop_after_attempt(n)` means, for a trigger (tenacity objects do not
    serialise); None when `retry_args` says nothing we can carry."""
    stop = (retry_args or {}).get("stop")
    attempts = getattr(stop, "max_attempt_number", None)
    return None if attempts is None else max(int(attempts) - 1, 0)


def with_retry_args(retry_args: Mapping[str, Any] | None, call: Callable[[], T]) -> T:
    """Run `call` under the official tenacity `retry_args` (on top of our own retry rule), or just run it."""
    return tenacity.Retrying(**retry_args)(call) if retry_args else call()
