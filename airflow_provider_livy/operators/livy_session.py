"""LivySessionOperator: run statements in order in one Livy interactive session, and always end it.

A session is a live Spark driver: forgotten, it holds its executors until an idle timeout that
someone may have set to weeks. This operator deletes its session on every way out: success, a
failed statement, kill, execution timeout, deferral timeout. Statements are not idempotent, so a
retry never re-attaches to the session of an earlier try: it finds it by its deterministic name
(as LivyBatchOperator finds its batch), deletes it, and starts afresh.

With `deferrable=True` the worker slot is free while the session starts and while each statement
runs: the operator submits a statement on a worker, then defers to a LivySessionTrigger that
long-polls it; on the event it logs the output and submits the next one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from airflow_provider_livy.hooks.arguments import request_body
from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.hooks.hook_spec import HookSpec
from airflow_provider_livy.hooks.waiting import ProgressLog
from airflow_provider_livy.operators.livy_task import (
    FAIL_METHOD,
    LivyTaskOperator,
    attributes,
    batch_name,
    defer_timeout,
    execution_deadline,
)
from airflow_provider_livy.protocol import (
    AVAILABLE,
    DEFAULT_KIND,
    IDLE,
    SESSION_OPERATOR_ARGUMENTS,
    SESSION_REQUEST_FIELDS,
    SHARED,
    BatchRequestError,
    Statement,
    output_error,
    output_value,
    session_kind,
    validate_session_request,
    validate_statement_request,
)
from airflow_provider_livy.triggers.livy import LivySessionTrigger

ATTRIBUTES = attributes(SESSION_OPERATOR_ARGUMENTS)
NAME_FREED_TIMEOUT = 60.0  # how long a deleted session of an earlier try may take to let go of its name
LOGGED_JSON_CHARS = 2000
LOG_TAIL_LINES = 20


def session_name(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The same name for every try of one task instance (batch_name's rules: readable, valid, unique)."""
    return batch_name(dag_id, task_id, run_id, map_index)


def statement_requests(statements: Any, kind: str = DEFAULT_KIND) -> list[dict[str, Any]]:
    """`statements` -> validated POST .../statements bodies. A string runs in the session's `kind`;
    {"code": ..., "kind": ...} names its own (in a shared session each must). Raises BatchRequestError
    naming the bad item."""
    if isinstance(statements, str) or not isinstance(statements, (list, tuple)):
        kind = type(statements).__name__
        raise BatchRequestError(f"statements must be a list of strings or {{'code', 'kind'}} objects, got {kind}")
    bodies = []
    for index, item in enumerate(statements):
        body = {"code": item} if isinstance(item, str) else item
        try:
            bodies.append(validate_statement_request(body))
            if kind == SHARED and "kind" not in bodies[-1]:
                raise BatchRequestError("a shared session runs only statements that name their kind (pyspark, spark or sql)")
        except BatchRequestError as err:
            raise BatchRequestError(f"statement {index}: {err}") from None
    return bodies


def shown(value: Any) -> str:
    """An output for the task log: text as it is, JSON compactly (cut, as sql results can be long)."""
    if isinstance(value, str):
        return value or "(no output)"
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= LOGGED_JSON_CHARS else text[:LOGGED_JSON_CHARS] + f"... ({len(text)} characters)"


class LivySessionOperator(LivyTaskOperator):
    """Run statements in one Livy interactive session; return the last one's output.

    The session arguments are Livy's create fields (see `protocol.SESSION_OPERATOR_ARGUMENTS`):
    kind (pyspark by default; spark, sql, shared where the server runs them), heartbeat_timeout_in_second,
    ttl, idle_timeout and the resource arguments of LivyTaskOperator (proxy_user, jars, py_files, files,
    archives, driver_memory, driver_cores, executor_memory, executor_cores, num_executors, queue, name,
    conf), which also takes livy_conn_id, polling_interval, deferrable (wait on the triggerer while the
    session starts and while each statement runs), extra_headers, executor_queue.

    :param statements: run in order; each a string in the session's kind or {"code": ..., "kind": ...}.
        A statement that fails (output status error) fails the task; later ones do not run.
    :param statement_timeout: seconds one statement may run; then it is cancelled and the task fails.
    :param session_start_timeout: seconds the session may take to become idle.

    XCom: return_value is the last statement's output (the application/json value, for sql
    `{"schema", "data"}`, else the text/plain string); also `session_id` and `app_id`.
    """

    ATTRIBUTES = ATTRIBUTES
    word = "session"
    id_attribute = "session_id"
    template_fields: Sequence[str] = ("statements", "conf", "name", "livy_conn_id")
    template_fields_renderers = {"conf": "json", "statements": "py"}

    def __init__(
        self,
        *,
        statements: list[str | dict[str, str]],
        kind: str = DEFAULT_KIND,
        heartbeat_timeout_in_second: int | str | None = None,
        ttl: str | None = None,
        idle_timeout: str | None = None,
        statement_timeout: float | None = None,
        session_start_timeout: float | None = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.statements = statements
        self.kind = session_kind(kind)  # an unknown kind fails when the DAG is parsed
        self.heartbeat_timeout_in_second, self.ttl, self.idle_timeout = heartbeat_timeout_in_second, ttl, idle_timeout
        if statement_timeout is not None and statement_timeout <= 0:
            raise ValueError(f"statement_timeout must be positive, got {statement_timeout}")
        self.statement_timeout = statement_timeout
        self.session_start_timeout = session_start_timeout
        self.session_id: int | None = None

    def delete(self, key: int | str) -> bool:
        return self.hook.delete_session(key)

    # --- requests ----------------------------------------------------------------------------------
    def session_request(self, context: Context) -> dict[str, Any]:
        """The validated POST /sessions body, with the deterministic name unless one was given."""
        try:
            return validate_session_request(
                request_body(self.request_arguments(context), SESSION_OPERATOR_ARGUMENTS, SESSION_REQUEST_FIELDS)
            )
        except BatchRequestError as err:
            raise AirflowFailException(f"invalid Livy session request for task {self.task_id}: {err}") from None

    def statement_requests(self) -> list[dict[str, Any]]:
        try:
            return statement_requests(self.statements, self.kind)
        except BatchRequestError as err:
            raise AirflowFailException(f"invalid statements for task {self.task_id}: {err}") from None

    # --- execute ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        request = self.session_request(context)
        statements = self.statement_requests()  # both checked before anything is sent
        self._end_earlier_try(request["name"])
        view = self._create(request)
        self.session_id = session_id = int(view["id"])
        context["ti"].xcom_push(key="session_id", value=session_id)
        if self.deferrable:
            self._defer(context, session_id)
        with self._ending_session(session_id):
            state = self.hook.wait_for_session(session_id, self.polling_interval, self.session_start_timeout)
            self._started(context, session_id, state)
            result = None
            for index, body in enumerate(statements):
                if self._killed:
                    raise AirflowException(f"task killed; Livy session {session_id} was deleted")
                statement = self.hook.submit_statement(session_id, body["code"], body.get("kind"))
                self._submitted(session_id, index, statement)
                statement = self.hook.wait_for_statement(
                    session_id,
                    statement,
                    polling_interval=self.polling_interval,
                    timeout=self.statement_timeout,
                    on_progress=ProgressLog(self.log, session_id, index),
                )
                result = self._finished(session_id, index, statement)
        return result

    def _end_earlier_try(self, name: str) -> None:
        """A session of this task instance still on the server belongs to a crashed earlier try: delete it.
        Re-attaching is no option, as its statements may have half run."""
        earlier = self.hook.find_session(name)
        if earlier is None:
            return
        self.log.info("Deleting session %s (%s, %s) that an earlier try left behind", earlier["id"], name, earlier.get("state"))
        self.hook.delete_session(earlier["id"])

    def _create(self, request: dict[str, Any]) -> dict[str, Any]:
        self.log.info("Creating Livy session %s: %s", request["name"], request)
        deadline = time.monotonic() + NAME_FREED_TIMEOUT
        while True:
            try:
                view = self.hook.create_session(request)
                break
            except LivyError as err:
                # the earlier try's session, just deleted, may hold the name a moment longer
                duplicate = err.status == 400 and "duplicate" in (err.msg or "").lower()
                if not duplicate or time.monotonic() > deadline:
                    raise AirflowException(f"Livy refused the session: {err}") from err
                time.sleep(0.5)
        self.log.info("Livy session %s created (%s, kind %s)", view["id"], view.get("state"), view.get("kind"))
        return view

    def _started(self, context: Context, session_id: int, state: str) -> None:
        """The session came up, or fail with the end of its driver log."""
        view = self.hook.find_session(session_id) or {}
        context["ti"].xcom_push(key="app_id", value=view.get("appId"))
        if state != IDLE:
            tail = "\n".join((view.get("log") or [])[-LOG_TAIL_LINES:]) or "(no driver output)"
            raise AirflowException(f"Livy session {session_id} ended {state} instead of starting. Last driver log lines:\n{tail}")
        self.log.info("Livy session %s is idle (app %s)", session_id, view.get("appId"))

    def _submitted(self, session_id: int, index: int, statement: Statement) -> None:
        code = statement.get("code")
        self.log.info("[livy session %s] statement %d (id %s) submitted: %s", session_id, index, statement["id"], code)

    def _finished(self, session_id: int, index: int, statement: Statement) -> Any:
        """Log a finished statement's output; fail on an error or a cancel; return its value."""
        if statement["state"] != AVAILABLE:
            what = f"Livy session {session_id}: statement {index} (id {statement['id']})"
            raise AirflowException(f"{what} ended {statement['state']}")
        output = statement.get("output")
        error = output_error(output)
        if error is not None:
            self.log.error("[livy session %s] statement %d failed:\n%s", session_id, index, error)
            raise AirflowException(f"Livy session {session_id}: statement {index} failed: {error}")
        value = output_value(output)
        self.log.info("[livy session %s] statement %d output:\n%s", session_id, index, shown(value))
        return value

    @contextlib.contextmanager
    def _ending_session(self, session_id: int) -> Iterator[None]:
        """Delete the session when the block ends, however it ends, except by deferring (the trigger waits on)."""
        try:
            yield
        except TaskDeferred:
            raise
        except BaseException as err:
            self.delete_quietly(session_id, f"the task stopped ({type(err).__name__})")
            raise
        self.delete_quietly(session_id, "its statements ran")

    # --- deferral ----------------------------------------------------------------------------------
    def _defer(self, context: Context, session_id: int, statement_id: int | None = None, index: int = 0) -> None:
        deadline = execution_deadline(self.execution_timeout, context)
        wait_limit = self.session_start_timeout if statement_id is None else self.statement_timeout
        if wait_limit is not None:
            deadline = min(deadline or float("inf"), time.time() + wait_limit)
        self.defer(
            trigger=LivySessionTrigger(
                session_id,
                self.livy_conn_id,
                self.polling_interval,
                statement_id=statement_id,
                index=index,
                deadline=deadline,
                **HookSpec.of_deferring_task(self).stored(),
            ),
            method_name="execute_complete",
            timeout=defer_timeout(deadline),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """The trigger's event: the session is up, or statement `index` finished. Submit the next or end."""
        self.session_id = session_id = int(event["session_id"])
        with self._ending_session(session_id):
            status = event.get("status")
            if status == "up":
                self._started(context, session_id, event["state"])
                index = -1
                result = None
            elif status == "finished":
                index = int(event["index"])
                result = self._finished(session_id, index, event["statement"])
            else:
                raise AirflowException(f"Livy session {session_id}: {status}: {event.get('message')}")
            statements = self.statement_requests()
            if index + 1 < len(statements):
                body = statements[index + 1]
                statement = self.hook.submit_statement(session_id, body["code"], body.get("kind"))
                self._submitted(session_id, index + 1, statement)
                self._defer(context, session_id, statement["id"], index + 1)
        return result

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Airflow timed the deferral out or the trigger crashed: delete our session, found by its name."""
        if next_method == FAIL_METHOD:
            view = self.hook.find_session(self.name or self.default_name(context))
            if view is not None:
                self.delete_quietly(int(view["id"]), "the deferred wait failed or timed out")
        return super().resume_execution(next_method, next_kwargs, context)
