"""How a task's hook is built, and built again the same way on the triggerer: the connection, the official
provider's arguments (headers, HttpHook `extra_options`, endpoint prefix, `auth_type`) and the retry count.
Operators, sensors and triggers all build their hooks from one HookSpec; a trigger stores it as plain data
(the auth type as its dotted path), so a restarted triggerer talks to the server as the task did."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, DEFAULT_RETRIES
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.hooks.official import retries_from


@dataclass(frozen=True)
class HookSpec:
    livy_conn_id: str = DEFAULT_CONN_ID
    extra_headers: dict[str, Any] | None = None
    extra_options: dict[str, Any] | None = None
    endpoint_prefix: str | None = None
    auth_type: Any | None = None  # a class (in a task) or its dotted path (stored with a trigger)
    retries: int | None = None
    leader: str | None = None  # of a group's servers, the one to start from in a new process (`current_server`)

    @classmethod
    def of_task(cls, task: Any, leader: str | None = None) -> HookSpec:
        """From an operator's or sensor's (templated) attributes of the official names; tenacity `retry_args`
        become the retry count they mean."""
        return cls(
            task.livy_conn_id,
            task.extra_headers,
            task.extra_options,
            task.livy_endpoint_prefix,
            task.livy_conn_auth_type,
            retries_from(task.retry_args),
            leader,
        )

    @classmethod
    def of_deferring_task(cls, task: Any) -> HookSpec:
        """What a task hands its trigger: its own spec, with the server its hook found answering, for the trigger
        (in the triggerer's process) to start from."""
        return cls.of_task(task, task.hook.answering_server())

    def _retries(self, retries: int | None) -> int:
        chosen = retries if retries is not None else self.retries
        return DEFAULT_RETRIES if chosen is None else chosen

    def hook(self) -> LivyHook:
        return LivyHook(
            self.livy_conn_id,
            self.extra_options,
            self.extra_headers,
            self.auth_type,
            self.endpoint_prefix,
            retries=self._retries(None),
            leader=self.leader,
        )

    def async_hook(self, retries: int | None = None) -> LivyAsyncHook:
        return LivyAsyncHook(
            self.livy_conn_id,
            self.extra_options,
            self.extra_headers,
            self.endpoint_prefix,
            self.auth_type,
            retries=self._retries(retries),
            leader=self.leader,
        )

    def stored(self) -> dict[str, Any]:
        """The trigger arguments besides livy_conn_id, as JSON-able data."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "livy_conn_id"}
