"""LivyBatchOperator: submit a Spark batch through Livy, wait for it, and always clean up after it.

The official LivyOperator leaves every finished batch on the server; that is how a Livy server
filled up with 40,000 dead sessions. This operator deletes its batch on every way out: success,
failure, kill, execution timeout, trigger timeout. Only `delete_on_failure=False` keeps a failed
batch for debugging (the server's retention and the maintenance DAG still sweep it later).

Every batch gets a deterministic name from dag, task, run and map index. Livy looks batches up
by name, so a retry after a worker crash finds the batch the dead worker left running and
re-attaches to it instead of submitting a duplicate. Unlike a batch id saved after submission,
the name travels inside the POST itself: there is no window in which a crash loses it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_provider_livy.hooks.arguments import build_request
from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.hooks.hook_spec import HookSpec
from airflow_provider_livy.hooks.waiting import batch_done, drive
from airflow_provider_livy.operators.livy_session import LivySessionOperator
from airflow_provider_livy.operators.livy_task import (
    DEFAULT_POLLING_INTERVAL,
    FAIL_METHOD,
    LivyTaskOperator,
    attributes,
    defer_timeout,
    execution_deadline,
)
from airflow_provider_livy.protocol import (
    FAILED_STATES,
    OPERATOR_ARGUMENTS,
    SUCCESS,
    TERMINAL_STATES,
    BatchRequestError,
)
from airflow_provider_livy.triggers.livy import LivyBatchTrigger

__all__ = ["LivyBatchOperator", "LivyOperator", "LivySessionOperator", "build_request"]  # DAGs import both operators from here

ERROR_LOG_LINES = 20
ATTRIBUTES = attributes(OPERATOR_ARGUMENTS)


class LivyBatchOperator(LivyTaskOperator):
    """Run one Spark batch through Livy.

    The batch arguments are Livy's request fields (see `protocol.OPERATOR_ARGUMENTS`), all templated:
    file, class_name, args and the resource arguments of LivyTaskOperator (conf, jars, py_files, files,
    archives, driver_memory, driver_cores, executor_memory, executor_cores, num_executors, queue, name,
    proxy_user), which also takes livy_conn_id, polling_interval, deferrable, extra_headers, executor_queue.

    :param wait_for_completion: wait for the batch (default, unless `polling_interval=0` without `deferrable`).
        Without waiting the task returns the batch id at once and the batch is left to a LivyBatchSensor
        (with delete_batch=True).
    :param delete_on_failure: delete a batch that ended dead/killed (default). False keeps it.
    :param stream_logs: copy driver log lines into the task log while the job runs.
    :param error_log_lines: how many of the last driver log lines a failure message quotes.
    """

    ATTRIBUTES = ATTRIBUTES
    word = "batch"
    id_attribute = "batch_id"
    template_fields: Sequence[str] = (*ATTRIBUTES.values(), "livy_conn_id")
    template_fields_renderers = {"conf": "json", "args": "py"}

    def __init__(
        self,
        *,
        file: str,
        class_name: str | None = None,
        args: list[str] | None = None,
        wait_for_completion: bool | None = None,
        delete_on_failure: bool = True,
        stream_logs: bool = True,
        error_log_lines: int = ERROR_LOG_LINES,
        **kwargs: Any,
    ) -> None:
        polls = kwargs.get("polling_interval", DEFAULT_POLLING_INTERVAL) != 0
        super().__init__(**kwargs)
        self.file, self.class_name, self.args = file, class_name, args
        if wait_for_completion is None:  # polling_interval=0 without deferrable: submit and return, as the official
            wait_for_completion = polls or self.deferrable
        self.wait_for_completion = wait_for_completion
        self.delete_on_failure = delete_on_failure
        self.stream_logs = stream_logs
        self.error_log_lines = error_log_lines
        self.batch_id: int | None = None
        self._recent: deque[str] = deque(maxlen=max(error_log_lines, 1))

    def delete(self, key: int | str) -> bool:
        return self.hook.discard_batch(key)

    # --- request ------------------------------------------------------------------------------
    def batch_request(self, context: Context) -> dict[str, Any]:
        """The validated request body, with the deterministic name unless one was given."""
        try:
            return build_request(self.request_arguments(context))
        except BatchRequestError as err:
            raise AirflowFailException(f"invalid Livy batch request for task {self.task_id}: {err}") from None

    # --- execute ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> int:
        request = self.batch_request(context)
        view = self._attach_or_submit(request, context)
        self.batch_id = batch_id = int(view["id"])
        context["ti"].xcom_push(key="batch_id", value=batch_id)
        if not self.wait_for_completion:
            context["ti"].xcom_push(key="app_id", value=self.hook.get_batch(batch_id).get("appId"))
            self.log.info(
                "Batch %s submitted; not waiting for it. It is left to the server's retention (ours forgets a batch "
                "livy.server.session.state-retain.sec after it ends) or to a LivyBatchSensor that deletes it",
                batch_id,
            )
            return batch_id
        if self.deferrable and view.get("state") not in TERMINAL_STATES:
            self.defer(
                trigger=LivyBatchTrigger(
                    batch_id,
                    self.livy_conn_id,
                    self.polling_interval,
                    deadline=self._deadline(context),
                    stream_logs=self.stream_logs,
                    **HookSpec.of_deferring_task(self).stored(),
                ),
                method_name="execute_complete",
                timeout=self._defer_timeout(context),
            )
        try:
            state = self._wait(batch_id)
        except BaseException:
            self.delete_quietly(batch_id, "the task stopped while the batch was running")
            raise
        return self._finish(context, batch_id, state)

    def _attach_or_submit(self, request: dict[str, Any], context: Context) -> dict[str, Any]:
        """Re-attach to this task instance's batch if an earlier try left it running, else submit.

        A failed batch kept by `delete_on_failure=False` keeps its name, so later tries use
        <name>-try2, -try3...; each try first looks at the names before it. With `durable=False` no
        earlier batch is re-attached to: each one of this task instance still there is deleted (unless
        kept as failed) and this try submits its own.
        """
        base = request["name"]
        try_number = max(int(getattr(context["ti"], "try_number", 1) or 1), 1)
        names = [base] + [f"{base}-try{n}" for n in range(2, try_number + 1)]
        if not self.durable:
            free = [self._drop_earlier(name) for name in names]
            return self._submit({**request, "name": names[-1] if free[-1] else f"{names[-1]}-{int(time.time())}"})
        for candidate in names:
            existing = self.hook.find_batch(candidate)
            if existing is None:
                return self._submit({**request, "name": candidate})
            if existing["state"] not in FAILED_STATES:
                self.log.info("Re-attaching to batch %s (%s, %s) of an earlier try", existing["id"], candidate, existing["state"])
                return existing
            if self._drop_earlier(candidate, existing):
                return self._submit({**request, "name": candidate})
        return self._submit({**request, "name": f"{base}-try{try_number}-{int(time.time())}"})

    def _drop_earlier(self, name: str, view: dict[str, Any] | None = None) -> bool:
        """Delete an earlier try's batch unless it is a failed one kept by `delete_on_failure=False`;
        True when the name is free again."""
        view = view or self.hook.find_batch(name)
        if view is None:
            return True
        if view["state"] in FAILED_STATES and not self.delete_on_failure:
            self.log.info("Keeping failed batch %s (%s) from an earlier try (delete_on_failure=False)", view["id"], name)
            return False
        self.log.info("Deleting batch %s (%s) that an earlier try left %s", view["id"], name, view["state"])
        self.hook.discard_batch(view["id"])
        return True

    def _submit(self, request: dict[str, Any]) -> dict[str, Any]:
        self.log.info("Submitting Livy batch %s: %s", request["name"], request)
        try:
            view = self.hook.submit_batch(request)
        except LivyError as err:
            # Another process (a zombie of this task) may have created it a moment ago: attach to that one.
            if err.status == 400 and "duplicate" in (err.msg or "").lower():
                existing = self.hook.find_batch(request["name"])
                if existing is not None:
                    return existing
            raise AirflowException(f"Livy refused the batch: {err}") from err
        self.log.info("Livy batch %s created (%s)", view["id"], view.get("state"))
        return view

    def _wait(self, batch_id: int) -> str:
        """Poll until the batch ends, copying new driver log lines into the task log as they come."""
        offset = 0

        def poll(wait: float | None) -> str:
            if self._killed:
                raise AirflowException(f"task killed; Livy batch {batch_id} was deleted")
            return self.hook.poll_batch_state(batch_id, wait=wait)

        def read_log() -> None:
            nonlocal offset
            lines, offset = self.hook.read_log(batch_id, offset)
            self._log_lines(batch_id, lines)

        return drive(batch_done(batch_id, self.polling_interval, stream_logs=self.stream_logs), poll, read_log=read_log)

    def _log_lines(self, batch_id: int, lines: list[str]) -> None:
        for line in lines:
            self.log.info("[livy batch %s] %s", batch_id, line)
        self._recent.extend(lines)

    def _finish(self, context: Context, batch_id: int, state: str) -> int:
        """Push XComs, delete the batch, and fail with the last log lines unless it succeeded."""
        view = self.hook.find_batch(batch_id) or {}
        ti = context["ti"]
        ti.xcom_push(key="app_id", value=view.get("appId"))
        ti.xcom_push(key="spark_ui_url", value=(view.get("appInfo") or {}).get("sparkUiUrl"))
        if state == SUCCESS:
            self.delete_quietly(batch_id, "it succeeded")
            return batch_id
        tail = list(self._recent) if self.stream_logs else self.hook.tail_log(batch_id, self.error_log_lines)
        if self.delete_on_failure:
            self.delete_quietly(batch_id, f"it ended {state}")
        else:
            self.log.warning("Keeping failed batch %s for debugging (delete_on_failure=False)", batch_id)
        shown = "\n".join(tail[-self.error_log_lines :]) or "(no driver output)"
        raise AirflowException(f"Livy batch {batch_id} ended {state}. Last driver log lines:\n{shown}")

    # --- deferral ----------------------------------------------------------------------------------
    def _deadline(self, context: Context) -> float | None:
        return execution_deadline(self.execution_timeout, context)

    def _defer_timeout(self, context: Context) -> timedelta | None:
        return defer_timeout(self._deadline(context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        batch_id = self.batch_id = int(event["batch_id"])
        self._log_lines(batch_id, event.get("log_lines") or [])
        status = event.get("status")
        if status == "finished":
            return self._finish(context, batch_id, event["state"])
        self.delete_quietly(batch_id, f"the trigger reported {status}")
        raise AirflowException(f"Livy batch {batch_id}: {status}: {event.get('message')}")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Airflow timed the deferral out or the trigger crashed: delete our batch, found by its name."""
        if next_method == FAIL_METHOD:
            name = self.name or self.default_name(context)
            view = self.hook.find_batch(name)
            if view is not None and (view["state"] not in FAILED_STATES or self.delete_on_failure):
                self.delete_quietly(int(view["id"]), "the deferred wait failed or timed out")
        return super().resume_execution(next_method, next_kwargs, context)


class LivyOperator(LivyBatchOperator):
    """The official provider's LivyOperator, with this provider's behaviour where it is strictly better.

    Its arguments, defaults, templated field (`spark_params`), XCom (`app_id`) and return value (the batch id)
    are the official ones. `polling_interval=0` (the default) without `deferrable` submits and returns, as there;
    the batch is then left to the server's retention or to a LivySensor, which deletes it once it has ended.
    When it waits (a positive `polling_interval`, or deferrable) the batch is deleted at the end, on failure,
    on kill and on timeout, and logs stream into the task log. Every LivyBatchOperator argument works too.
    """

    template_fields: Sequence[str] = ("spark_params",)
    template_fields_renderers = {"spark_params": "json"}

    def __init__(self, *, file: str, polling_interval: float = 0, **kwargs: Any) -> None:
        super().__init__(file=file, polling_interval=polling_interval, **kwargs)

    @property
    def spark_params(self) -> dict[str, Any]:
        """The batch arguments as one templated dict, as the official operator holds them."""
        return {arg: getattr(self, attr) for arg, attr in self.ATTRIBUTES.items()}

    @spark_params.setter
    def spark_params(self, params: dict[str, Any]) -> None:
        for arg, value in params.items():
            setattr(self, self.ATTRIBUTES[arg], value)

    def kill(self) -> None:
        """Delete the current batch (the official operator's name for it)."""
        if self.batch_id is not None:
            self.delete_quietly(self.batch_id, "kill() was called")

    # --- the official operator's resumable-job methods, for code that calls or overrides them ----------
    external_id_key = "livy_batch_id"

    def execute_resumable(self, context: Context) -> int:
        """The official crash-safe path: ours is `execute` itself, which re-attaches by name on every path."""
        return self.execute(context)

    def submit_job(self, context: Context) -> int:
        """Submit the batch (or, with `durable`, re-attach to the one an earlier try left running); its id."""
        view = self._attach_or_submit(self.batch_request(context), context)
        self.batch_id = int(view["id"])
        self.log.info("Generated batch-id is %s", self.batch_id)
        return self.batch_id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        return str(self.hook.get_batch_state(external_id, retry_args=self.retry_args))

    def is_job_active(self, status: str) -> bool:
        return status not in TERMINAL_STATES

    def is_job_succeeded(self, status: str) -> bool:
        return status == SUCCESS

    def poll_until_complete(self, external_id: Any, context: Context) -> None:
        self.batch_id = int(external_id)
        self.poll_for_termination(self.batch_id)

    def get_job_result(self, external_id: Any, context: Context) -> int:
        """Push XCom `app_id`; the batch id."""
        context["ti"].xcom_push(key="app_id", value=self.hook.get_batch(external_id).get("appId"))
        return int(external_id)

    def poll_for_termination(self, batch_id: int | str) -> None:
        """Wait until the batch ends (long polls, driver log lines streamed into the task log);
        AirflowException unless it succeeded. The batch is kept: `execute` deletes it, a caller of this may not."""
        state = self._wait(int(batch_id))
        self.log.info("Batch with id %s terminated with state: %s", batch_id, state)
        if state != SUCCESS:
            raise AirflowException(f"Batch {batch_id} did not succeed")
