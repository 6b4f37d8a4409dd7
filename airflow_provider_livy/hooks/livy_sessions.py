"""LivySessionCalls: the sync hook's interactive session and statement calls (LivyHook has them all)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from airflow_provider_livy.hooks.connection import LivyError, statement_path, wait_params
from airflow_provider_livy.hooks.livy_http import LivyHttp
from airflow_provider_livy.hooks.waiting import drive, session_up, statement_done
from airflow_provider_livy.protocol import (
    SESSIONS_PATH,
    SessionView,
    Statement,
    validate_session_request,
    validate_statement_request,
)

LIST_PAGE = 100


class LivySessionCalls(LivyHttp):
    """Create, watch and end interactive sessions; run, wait for and cancel their statements."""

    def create_session(self, body: dict[str, Any]) -> SessionView:
        """POST /sessions with a validated body (kind defaults to pyspark); returns the new session's view."""
        clean = validate_session_request(body)
        return self._json("POST", SESSIONS_PATH, json=clean, expect=(200, 201))

    def get_session(self, key: int | str) -> SessionView:
        """GET /sessions/{id}, or by name for a non-numeric key."""
        return self._get(SESSIONS_PATH, key)

    def find_session(self, key: int | str) -> SessionView | None:
        """Like get_session, but None when the server does not hold it."""
        return self._find(SESSIONS_PATH, key)

    def get_session_state(self, key: int | str, wait: float | None = None) -> str:
        """The session's state; with `wait`, a long poll as for batches."""
        return self._state(SESSIONS_PATH, key, wait)

    def list_sessions(self, page_size: int = LIST_PAGE) -> Iterator[SessionView]:
        """Every interactive session (GET /sessions), a page at a time. A server without them answers 404."""
        return self._list(SESSIONS_PATH, page_size)

    def delete_session(self, key: int | str) -> bool:
        """DELETE /sessions/{id}: stop an interactive session and forget it. False when it was already gone."""
        return self._delete(SESSIONS_PATH, key)

    def read_session_log(self, key: int | str, offset: int = 0, page_size: int = 1000) -> tuple[list[str], int]:
        """The session driver's log lines after line `offset`, and the new offset."""
        return self._read_log(SESSIONS_PATH, key, offset, page_size)

    def submit_statement(self, session_id: int, code: str, kind: str | None = None) -> Statement:
        """POST /sessions/{id}/statements; `kind` (pyspark or sql) overrides the session's for this statement."""
        clean = validate_statement_request({"code": code, "kind": kind})
        return self._json("POST", statement_path(session_id), json=clean, expect=(200, 201))

    def get_statement(self, session_id: int, statement_id: int, wait: float | None = None) -> Statement:
        """The statement; with `wait`, our server answers at its next state change or after `wait` seconds."""
        return self._json("GET", statement_path(session_id, statement_id), params=wait_params(wait), held=wait or 0.0)

    def cancel_statement(self, session_id: int, statement_id: int) -> None:
        """POST .../statements/{sid}/cancel: interrupt a waiting or running statement."""
        self._json("POST", statement_path(session_id, statement_id, "cancel"))

    def wait_for_session(self, session_id: int, polling_interval: float = 10.0, timeout: float | None = None) -> str:
        """Long-poll until the session has come up (idle) or ended; returns that state. WaitTimeout at `timeout`."""
        waiter = session_up(session_id, polling_interval, timeout)
        return drive(waiter, lambda wait: self.get_session_state(session_id, wait), self._sleep)

    def run_statement(
        self,
        session_id: int,
        code: str,
        kind: str | None = None,
        *,
        polling_interval: float = 10.0,
        timeout: float | None = None,
        on_progress: Callable[[Statement], None] | None = None,
    ) -> Statement:
        """Submit a statement and long-poll it until it is available or cancelled; returns it.

        At `timeout` the statement is cancelled and WaitTimeout raised. `on_progress` sees every poll's answer.
        """
        statement = self.submit_statement(session_id, code, kind)
        return self.wait_for_statement(
            session_id, statement, polling_interval=polling_interval, timeout=timeout, on_progress=on_progress
        )

    def wait_for_statement(
        self,
        session_id: int,
        statement: Statement,
        *,
        polling_interval: float = 10.0,
        timeout: float | None = None,
        on_progress: Callable[[Statement], None] | None = None,
    ) -> Statement:
        """Long-poll a submitted statement until it is available or cancelled; at `timeout` the waiter
        has it cancelled and WaitTimeout raised."""
        waiter = statement_done(session_id, statement, polling_interval, timeout, on_progress)
        poll = lambda wait: self.get_statement(session_id, statement["id"], wait)  # noqa: E731
        return drive(waiter, poll, self._sleep, cancel=lambda: self.cancel_quietly(session_id, statement["id"]))

    def cancel_quietly(self, session_id: int, statement_id: int) -> None:
        try:
            self.cancel_statement(session_id, statement_id)
        except LivyError as err:
            self.log.warning("Could not cancel statement %s of session %s: %s", statement_id, session_id, err)
