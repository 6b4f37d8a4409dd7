"""LivyBatchTrigger and LivySessionTrigger: wait on the triggerer, so a deferred task holds no worker slot.

It polls adaptively (quick at first, then every `polling_interval`), logs new driver lines as
they arrive (Airflow shows trigger logs in the task log) and carries them in its event. At its
`deadline` it deletes the batch and reports a timeout; when a user kills the deferred task it
deletes the batch too (`on_kill`). A triggerer restart is neither: the batch keeps running and
the triggerer rebuilds the trigger from the arguments stored at deferral, so it polls on from there
(its log lines are logged again from that offset).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError
from airflow_provider_livy.hooks.hook_spec import HookSpec
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.hooks.official import dotted
from airflow_provider_livy.hooks.waiting import ProgressLog, WaitTimeout, adrive, batch_done

EVENT_LOG_LINES = 1000  # the last lines ride along in the event; all of them are in the trigger log


class LivyBatchTrigger(BaseTrigger):
    """Fires once: {"status": "finished" | "timeout" | "error", "batch_id", "state", "log_lines", "log_offset", "message"}.

    `extra_headers`, `extra_options`, `endpoint_prefix`, `auth_type` (a class or its dotted path) and
    `retries` reach the async hook as they reached the task's hook; `leader`, the server of a group the task's
    hook found answering, is where the trigger's calls start."""

    def __init__(
        self,
        batch_id: int,
        livy_conn_id: str = DEFAULT_CONN_ID,
        polling_interval: float = 10.0,
        *,
        log_offset: int = 0,
        deadline: float | None = None,
        stream_logs: bool = True,
        delete_on_timeout: bool = True,
        extra_headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        auth_type: Any | None = None,
        retries: int | None = None,
        leader: str | None = None,
    ) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.livy_conn_id = livy_conn_id
        self.polling_interval = polling_interval
        self.log_offset = log_offset
        self.deadline = deadline
        self.stream_logs = stream_logs
        self.delete_on_timeout = delete_on_timeout
        self.hook_spec = HookSpec(livy_conn_id, extra_headers, extra_options, endpoint_prefix, dotted(auth_type), retries, leader)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "batch_id": self.batch_id,
                "livy_conn_id": self.livy_conn_id,
                "polling_interval": self.polling_interval,
                "log_offset": self.log_offset,
                "deadline": self.deadline,
                "stream_logs": self.stream_logs,
                "delete_on_timeout": self.delete_on_timeout,
                **self.hook_spec.stored(),
            },
        )

    def _event(self, status: str, state: str | None, lines: deque[str], message: str = "") -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "batch_id": self.batch_id,
                "state": None if state is None else str(state),  # a plain string in the stored event
                "log_lines": list(lines),
                "log_offset": self.log_offset,
                "message": message,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self.hook_spec.async_hook()
        lines: deque[str] = deque(maxlen=EVENT_LOG_LINES)
        state: str | None = None
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.time())

        async def poll(wait: float | None) -> str:
            nonlocal state
            state = await hook.poll_batch_state(self.batch_id, wait=wait)
            return state

        async def read_log() -> None:
            new, self.log_offset = await hook.read_log(self.batch_id, self.log_offset)
            for line in new:
                self.log.info("[livy batch %s] %s", self.batch_id, line)
            lines.extend(new)

        try:
            waiter = batch_done(self.batch_id, self.polling_interval, timeout, self.stream_logs)
            state = await adrive(waiter, poll, read_log=read_log)
            yield self._event("finished", state, lines)
        except WaitTimeout as err:
            message = str(err)
            if self.delete_on_timeout:
                await hook.discard_batch(self.batch_id)
                message += "; deleted it"
            self.log.warning(message)
            yield self._event("timeout", err.state, lines, message)
        except LivyError as err:
            yield self._event("error", state, lines, str(err))
        finally:
            await hook.aclose()

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed, clear): stop and forget the Spark job."""
        hook = self.hook_spec.async_hook(retries=2)
        try:
            if await hook.discard_batch(self.batch_id):
                self.log.info("deleted Livy batch %s because the task was killed", self.batch_id)
        finally:
            await hook.aclose()


class LivyTrigger(LivyBatchTrigger):
    """The official provider's LivyTrigger: its arguments, stored arguments and events ({"status": "success" |
    "error" | "timeout", "batch_id", "response", "log_lines"}, plus ours: "state", "log_offset", "message").

    As there, `polling_interval <= 0` fires success at once without looking. Unlike there, the deadline
    (`execution_timeout` from the deferral) survives a triggerer restart, and at it the batch is deleted.
    """

    def __init__(  # noqa: PLR0917 (the official signature)
        self,
        batch_id: int | str,
        spark_params: dict[Any, Any] | None = None,
        livy_conn_id: str = DEFAULT_CONN_ID,
        polling_interval: float = 0,
        extra_options: dict[str, Any] | None = None,
        extra_headers: dict[str, Any] | None = None,
        livy_hook_async: LivyAsyncHook | None = None,
        execution_timeout: timedelta | None = None,
        endpoint_prefix: str | None = None,
        *,
        deadline: float | None = None,
        **ours: Any,
    ) -> None:
        if deadline is None and execution_timeout is not None:
            deadline = time.time() + execution_timeout.total_seconds()
        options = {"extra_options": extra_options, "extra_headers": extra_headers, "endpoint_prefix": endpoint_prefix}
        super().__init__(int(batch_id), livy_conn_id, polling_interval, deadline=deadline, **options, **ours)
        self.spark_params = spark_params or {}
        self.execution_timeout = execution_timeout
        self.livy_hook_async = livy_hook_async  # accepted as the official trigger does; each run builds its own

    def serialize(self) -> tuple[str, dict[str, Any]]:
        classpath, stored = super().serialize()
        official = {"spark_params": self.spark_params, "livy_hook_async": None, "execution_timeout": self.execution_timeout}
        return classpath, {**stored, **official}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.polling_interval <= 0:
            yield TriggerEvent(official_event({"status": "finished", "batch_id": self.batch_id, "state": "success"}))
            return
        async for event in super().run():
            yield TriggerEvent(official_event(event.payload))


def official_event(ours: dict[str, Any]) -> dict[str, Any]:
    """Our trigger event in the official shape, our keys kept."""
    batch_id, status = ours["batch_id"], ours["status"]
    if status == "finished" and ours.get("state") == "success":
        official = {"status": "success", "response": f"Batch {batch_id} succeeded"}
    elif status == "finished":
        official = {"status": "error", "response": f"Batch {batch_id} did not succeed"}
    elif status == "timeout":
        official = {"status": "timeout", "response": f"Batch {batch_id} timed out"}
    else:
        official = {"status": "error", "response": f"Batch {batch_id} did not succeed with {ours.get('message')}"}
    return {**ours, **official, "log_lines": ours.get("log_lines")}


class LivySessionTrigger(BaseTrigger):
    """Waits on the triggerer for an interactive session to come up (no `statement_id`) or for one of
    its statements to finish, long-polling either; fires once:
    {"status": "up" | "finished" | "timeout" | "error", "session_id", "index", "state", "statement", "message"}.

    It never submits: the operator submits each statement on a worker and defers again, so a
    restarted triggerer, which rebuilds the trigger from its stored arguments, only waits again.
    At `deadline` (epoch seconds: the execution timeout or the statement's) and when the user kills
    the deferred task, it deletes the session.
    """

    def __init__(
        self,
        session_id: int,
        livy_conn_id: str = DEFAULT_CONN_ID,
        polling_interval: float = 10.0,
        *,
        statement_id: int | None = None,
        index: int = 0,
        deadline: float | None = None,
        extra_headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        auth_type: Any | None = None,
        retries: int | None = None,
        leader: str | None = None,
    ) -> None:
        super().__init__()
        self.session_id = session_id
        self.livy_conn_id = livy_conn_id
        self.polling_interval = polling_interval
        self.statement_id = statement_id
        self.index = index
        self.deadline = deadline
        self.hook_spec = HookSpec(livy_conn_id, extra_headers, extra_options, endpoint_prefix, dotted(auth_type), retries, leader)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "session_id": self.session_id,
                "livy_conn_id": self.livy_conn_id,
                "polling_interval": self.polling_interval,
                "statement_id": self.statement_id,
                "index": self.index,
                "deadline": self.deadline,
                **self.hook_spec.stored(),
            },
        )

    def _event(self, status: str, state: str | None = None, statement: Any = None, message: str = "") -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "session_id": self.session_id,
                "index": self.index,
                "state": state,
                "statement": statement,
                "message": message,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self.hook_spec.async_hook()
        timeout = None if self.deadline is None else max(0.0, self.deadline - time.time())
        try:
            if self.statement_id is None:
                state = await hook.wait_for_session(self.session_id, self.polling_interval, timeout)
                yield self._event("up", state)
                return
            progress = ProgressLog(self.log, self.session_id, self.index)
            statement = await hook.get_statement(self.session_id, self.statement_id)
            statement = await hook.wait_for_statement(
                self.session_id, statement, polling_interval=self.polling_interval, timeout=timeout, on_progress=progress
            )
            yield self._event("finished", statement["state"], statement)
        except WaitTimeout as err:
            message = f"{err} at the deadline"
            if await hook.delete_session(self.session_id):
                message += f"; deleted session {self.session_id}"
            self.log.warning(message)
            yield self._event("timeout", message=message)
        except LivyError as err:
            yield self._event("error", message=str(err))
        finally:
            await hook.aclose()

    async def on_kill(self) -> None:
        """The user killed the deferred task (mark failed, clear): end the session and its Spark driver."""
        hook = self.hook_spec.async_hook(retries=2)
        try:
            if await hook.delete_session(self.session_id):
                self.log.info("deleted Livy session %s because the task was killed", self.session_id)
        finally:
            await hook.aclose()
