"""LivyBatchSensor and LivySensor: wait for a batch someone else submitted (e.g. LivyBatchOperator with
wait_for_completion=False, or LivyOperator with polling_interval=0).

Unlike the official sensor, only `success` counts as success: dead, killed and error fail the
task (or skip it with soft_fail=True). With delete_batch=True the sensor deletes the batch once
it has ended, so the submit-then-sense pattern leaves nothing behind either.

With a connection listing a group's servers, each poke starts from the server that answered the poke
before: in reschedule mode every poke is a run of its own, in a process of its own, which would otherwise
start from the first server again (a dead one costs a connection attempt, a standby a proxy hop). The
server is kept in the task's state store (`context["task_state_store"]`, which Airflow 3.3 has; without
it each poke starts from the first server again), written only when it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError
from airflow_provider_livy.hooks.hook_spec import HookSpec
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.official import default_deferrable
from airflow_provider_livy.protocol import SUCCESS, TERMINAL_STATES
from airflow_provider_livy.signatures import inherit_signature
from airflow_provider_livy.triggers.livy import LivyBatchTrigger

ERROR_LOG_LINES = 20
LEADER_KEY = "livy_leader"  # in the task's state store: the server of a group the last poke found answering


class LivyBatchSensor(BaseSensorOperator):
    """Succeeds when batch `batch_id` (templated) reaches `success`; fails on dead, killed or error.

    :param delete_batch: delete the batch once it has ended, whatever the outcome.
    :param deferrable: wait on the triggerer, polling every `poke_interval` at most; by default
        `[operators] default_deferrable`.
    :param extra_headers: headers added to the connection's.

    The official sensor's arguments (`livy_conn_auth_type`, `extra_options`, `endpoint_prefix`) and the
    official operator's (`livy_endpoint_prefix`, `retry_args`) mean what they mean there.
    """

    template_fields: Sequence[str] = ("batch_id", "livy_conn_id")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherit_signature(cls)

    def __init__(
        self,
        *,
        batch_id: int | str,
        livy_conn_id: str = DEFAULT_CONN_ID,
        delete_batch: bool = False,
        deferrable: bool | None = None,
        extra_headers: dict[str, Any] | None = None,
        livy_conn_auth_type: Any | None = None,
        extra_options: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        livy_endpoint_prefix: str | None = None,
        retry_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.livy_conn_id = livy_conn_id
        self.delete_batch = delete_batch
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.extra_headers = extra_headers
        self.livy_conn_auth_type = livy_conn_auth_type
        self.extra_options = extra_options
        self.livy_endpoint_prefix = endpoint_prefix or livy_endpoint_prefix
        self.retry_args = retry_args

    @cached_property
    def hook(self) -> LivyHook:
        return HookSpec.of_task(self).hook()

    def get_hook(self) -> LivyHook:
        """The official sensor's name for its hook."""
        return self.hook

    def poke(self, context: Context) -> bool:
        state = self._remembering_the_leader(context, lambda: self.hook.poll_batch_state(self.batch_id))
        self.log.info("Livy batch %s is %s", self.batch_id, state)
        if state not in TERMINAL_STATES:
            return False
        self._conclude(state)
        return True

    def _remembering_the_leader(self, context: Context, poll: Callable[[], str]) -> str:
        """`poll()`, starting from the server the last poke found answering, and keeping the one this poke found."""
        store = context.get("task_state_store")
        if store is None or len(self.hook.settings.base_urls) < 2:
            return poll()
        self.hook.leader = known = store.get(LEADER_KEY)
        state = poll()
        if (found := self.hook.answering_server()) != known:
            store.set(LEADER_KEY, found)
        return state

    def _conclude(self, state: str, tail: list[str] | None = None) -> None:
        """Delete if asked; raise unless the batch succeeded (soft_fail turns the failure into a skip)."""
        if state != SUCCESS and tail is None:
            tail = self.hook.tail_log(self.batch_id, ERROR_LOG_LINES)
        if self.delete_batch:
            try:
                self.hook.discard_batch(self.batch_id)
                self.log.info("Deleted Livy batch %s (%s)", self.batch_id, state)
            except LivyError as err:
                self.log.error("Could not delete Livy batch %s: %s", self.batch_id, err)
        if state != SUCCESS:
            lines = "\n".join(tail or []) or "(no driver output)"
            raise AirflowFailException(f"Livy batch {self.batch_id} ended {state}. Last driver log lines:\n{lines}")

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        try:
            if self.poke(context):  # already over: no need to defer
                return None
        except AirflowFailException as err:
            if self.soft_fail:
                raise AirflowSkipException(f"soft_fail: {err}") from err
            raise
        self.defer(
            trigger=LivyBatchTrigger(
                int(self.batch_id),
                self.livy_conn_id,
                self.poke_interval,
                stream_logs=False,
                **HookSpec.of_deferring_task(self).stored(),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") != "finished":
            raise AirflowException(f"Livy batch {self.batch_id}: {event.get('status')}: {event.get('message')}")
        self._conclude(event["state"])


class LivySensor(LivyBatchSensor):
    """The official provider's LivySensor: its arguments and templated field, waiting for the end of
    `batch_id`. Unlike there, the batch is deleted once the sensor has seen its end (`delete_batch=False`
    keeps it for a later task), and only `success` succeeds: dead, killed and error fail the task."""

    def __init__(self, *, batch_id: int | str, delete_batch: bool = True, **kwargs: Any) -> None:
        super().__init__(batch_id=batch_id, delete_batch=delete_batch, **kwargs)
