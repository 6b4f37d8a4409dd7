"""What every Livy operator does the same way: the Spark resource arguments, a deterministic name per task
instance, a request body from operator arguments, the hook, deleting what it made when killed, and the
deadlines a deferred task keeps (Airflow 3's execution_timeout does not cover deferred time).
LivyBatchOperator (livy.py) and LivySessionOperator (livy_session.py) build on LivyTaskOperator.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import timedelta
from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context

from airflow_provider_livy import openlineage
from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError
from airflow_provider_livy.hooks.hook_spec import HookSpec
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.official import default_deferrable
from airflow_provider_livy.signatures import inherit_signature

DEFAULT_POLLING_INTERVAL = 10.0
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


def attributes(table: dict[str, str]) -> dict[str, str]:
    """Argument -> attribute. BaseOperator already has `queue` (the executor's queue), so Livy's is kept apart."""
    return {arg: "livy_queue" if arg == "queue" else arg for arg in table}


class LivyTaskOperator(BaseOperator):
    """The arguments and behaviour LivyBatchOperator and LivySessionOperator share.

    The Spark resource arguments are Livy's request fields (proxy_user, jars, py_files, files, archives,
    driver_memory, driver_cores, executor_memory, executor_cores, num_executors, queue, name, conf).
    `name` defaults to a deterministic per-task-instance name; a name of your own must be unique per run too.

    :param livy_conn_id: the Livy connection (ours, `livy_batch`, or the official `livy`).
    :param polling_interval: the longest wait between polls; early polls come sooner. Our server holds
        each poll until the state changes (up to 10 s), so the end is noticed at once whatever the interval.
        0, the official operator's default, means the default interval (10 s) wherever the task waits;
        LivyBatchOperator without `deferrable` does not wait at all then, as the official operator.
    :param deferrable: wait on the triggerer instead of holding a worker slot; by default
        `[operators] default_deferrable`.
    :param extra_headers: headers added to the connection's.
    :param executor_queue: Airflow's `queue` for this task (which executor queue runs it). `queue`
        itself is Livy's (the YARN queue), as in the official operator. A `queue` in default_args
        therefore sets both: Livy's queue, and the executor's unless `executor_queue` is given.

    The official operator's arguments mean what they mean there, on the worker and on the triggerer:
    :param livy_conn_auth_type: a requests auth class (an httpx.Auth class when deferred), or its dotted path.
    :param livy_endpoint_prefix: a path added to the connection's URL.
    :param extra_options: HttpHook options: `verify`, `timeout`, `proxies`, `cert`.
    :param retry_args: tenacity arguments; `stop=stop_after_attempt(n)` sets how often a call is tried.
    :param durable: True (the default, as there): a batch's retry re-attaches to the batch an earlier try left
        running, found by its deterministic name (on every path, deferred too; no task state store needed).
        False: as there, a retry submits a new batch; unlike there, the earlier try's batch is deleted first.
    :param openlineage_inject_parent_job_info: add the OpenLineage parent job keys to the Spark conf.
    :param openlineage_inject_transport_info: add Airflow's OpenLineage transport to the Spark conf.
    """

    ATTRIBUTES: ClassVar[dict[str, str]]  # the subclass's argument -> attribute table
    word: ClassVar[str]  # "batch" or "session", in log lines
    id_attribute: ClassVar[str]  # where the subclass keeps the id of what it created
    template_fields_renderers = {"conf": "json"}
    ui_color = "#f4a460"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherit_signature(cls)

    def __init__(
        self,
        *,
        proxy_user: str | None = None,
        jars: list[str] | None = None,
        py_files: list[str] | None = None,
        files: list[str] | None = None,
        archives: list[str] | None = None,
        driver_memory: str | None = None,
        driver_cores: int | str | None = None,
        executor_memory: str | None = None,
        executor_cores: int | str | None = None,
        num_executors: int | str | None = None,
        queue: str | None = None,
        name: str | None = None,
        conf: dict[str, Any] | None = None,
        livy_conn_id: str = DEFAULT_CONN_ID,
        polling_interval: float = DEFAULT_POLLING_INTERVAL,
        deferrable: bool | None = None,
        extra_headers: dict[str, Any] | None = None,
        executor_queue: str | None = None,
        livy_conn_auth_type: Any | None = None,
        livy_endpoint_prefix: str | None = None,
        extra_options: dict[str, Any] | None = None,
        retry_args: dict[str, Any] | None = None,
        durable: bool | None = None,
        openlineage_inject_parent_job_info: bool | None = None,
        openlineage_inject_transport_info: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs if executor_queue is None else {**kwargs, "queue": executor_queue})
        self.proxy_user, self.jars, self.py_files, self.files, self.archives = proxy_user, jars, py_files, files, archives
        self.driver_memory, self.driver_cores = driver_memory, driver_cores
        self.executor_memory, self.executor_cores, self.num_executors = executor_memory, executor_cores, num_executors
        self.livy_queue, self.name, self.conf = queue, name, conf
        if polling_interval < 0:
            raise ValueError(f"polling_interval must be positive (or 0, the official operator's default), got {polling_interval}")
        self.livy_conn_id = livy_conn_id
        self.polling_interval = polling_interval or DEFAULT_POLLING_INTERVAL
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.extra_headers = extra_headers
        self.livy_conn_auth_type, self.livy_endpoint_prefix = livy_conn_auth_type, livy_endpoint_prefix
        self.extra_options, self.retry_args = extra_options, retry_args
        self.durable = True if durable is None else durable
        parent_job, transport = openlineage.inject_defaults()
        self.openlineage_inject_parent_job_info = (
            parent_job if openlineage_inject_parent_job_info is None else openlineage_inject_parent_job_info
        )
        self.openlineage_inject_transport_info = (
            transport if openlineage_inject_transport_info is None else openlineage_inject_transport_info
        )
        self._killed = False

    @cached_property
    def hook(self) -> LivyHook:
        return HookSpec.of_task(self).hook()

    def request_arguments(self, context: Context) -> dict[str, Any]:
        """The operator's request arguments, with the deterministic name unless one was given, and the
        OpenLineage keys in the Spark conf when asked (a session's statements inherit its conf)."""
        arguments = {arg: getattr(self, attr) for arg, attr in self.ATTRIBUTES.items()}
        arguments["name"] = self.name or self.default_name(context)
        parent_job, transport = self.openlineage_inject_parent_job_info, self.openlineage_inject_transport_info
        if parent_job or transport:
            arguments["conf"] = openlineage.spark_conf(self.conf, context, parent_job=parent_job, transport=transport)
        return arguments

    @staticmethod
    def default_name(context: Context) -> str:
        ti = context["ti"]
        return batch_name(ti.dag_id, ti.task_id, ti.run_id, ti.map_index if ti.map_index is not None else -1)

    def delete(self, key: int | str) -> bool:
        """Delete the batch or session `key`; False when it was already gone."""
        raise NotImplementedError

    def delete_quietly(self, key: int | str, why: str) -> None:
        """Delete it, logging why; a failure to delete is logged, not raised (the task's own outcome stands)."""
        try:
            if self.delete(key):
                self.log.info("Deleted Livy %s %s because %s", self.word, key, why)
        except LivyError as err:
            self.log.error("Could not delete Livy %s %s (%s): %s", self.word, key, why, err)

    def on_kill(self) -> None:
        """Airflow is stopping the task (user kill, execution timeout, SIGTERM): end what it made."""
        self._killed = True
        key = getattr(self, self.id_attribute, None)
        if key is not None:
            self.delete_quietly(key, "the task was killed")
