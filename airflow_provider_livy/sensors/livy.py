"""LivyBatchSensor: wait for a batch someone else submitted (e.g. LivyBatchOperator with wait_for_completion=False).

Unlike the official sensor, only `success` counts as success: dead, killed and error fail the
task (or skip it with soft_fail=True). With delete_batch=True the sensor deletes the batch once
it has ended, so the submit-then-sense pattern leaves nothing behind either.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.protocol import SUCCESS, TERMINAL_STATES
from airflow_provider_livy.triggers.livy import LivyBatchTrigger

ERROR_LOG_LINES = 20


class LivyBatchSensor(BaseSensorOperator):
    """Succeeds when batch `batch_id` (templated) reaches `success`; fails on dead, killed or error.

    :param delete_batch: delete the batch once it has ended, whatever the outcome.
    :param deferrable: wait on the triggerer, polling every `poke_interval` at most.
    """

    template_fields: Sequence[str] = ("batch_id", "livy_conn_id")

    def __init__(
        self,
        *,
        batch_id: int | str,
        livy_conn_id: str = DEFAULT_CONN_ID,
        delete_batch: bool = False,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_id = batch_id
        self.livy_conn_id = livy_conn_id
        self.delete_batch = delete_batch
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> LivyHook:
        return LivyHook(self.livy_conn_id)

    def poke(self, context: Context) -> bool:
        state = self.hook.get_batch_state(self.batch_id)
        self.log.info("Livy batch %s is %s", self.batch_id, state)
        if state not in TERMINAL_STATES:
            return False
        self._conclude(state)
        return True

    def _conclude(self, state: str, tail: list[str] | None = None) -> None:
        """Delete if asked; raise unless the batch succeeded (soft_fail turns the failure into a skip)."""
        if state != SUCCESS and tail is None:
            tail = self.hook.tail_log(self.batch_id, ERROR_LOG_LINES)
        if self.delete_batch:
            try:
                self.hook.delete_batch(self.batch_id)
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
            trigger=LivyBatchTrigger(int(self.batch_id), self.livy_conn_id, self.poke_interval, stream_logs=False),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        if event.get("status") != "finished":
            raise AirflowException(f"Livy batch {self.batch_id}: {event.get('status')}: {event.get('message')}")
        self._conclude(event["state"])
