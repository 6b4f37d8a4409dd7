"""LivyAsyncSessionCalls: the async hook's interactive session and statement calls, as LivySessionCalls's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_livy.hooks.connection import LivyError, session_path, statement_path, wait_params
from airflow_provider_livy.hooks.livy_async_http import LivyAsyncHttp
from airflow_provider_livy.hooks.waiting import adrive, session_up, statement_done
from airflow_provider_livy.protocol import (
    SESSIONS_PATH,
    SessionView,
    Statement,
    validate_session_request,
    validate_statement_request,
)

LIST_PAGE = 100


class LivyAsyncSessionCalls(LivyAsyncHttp):
    """Create, watch and end interactive sessions; run, wait for and cancel their statements."""

    async def create_session(self, body: dict[str, Any]) -> SessionView:
        """POST /sessions with a validated body, as LivyHook.create_session."""
        return await self._json("POST", SESSIONS_PATH, json=validate_session_request(body), expect=(200, 201))

    async def list_sessions(self, page_size: int = LIST_PAGE) -> list[SessionView]:
        """Every interactive session, fetched a page at a time."""
        found: list[SessionView] = []
        while True:
            page = await self._json("GET", SESSIONS_PATH, params={"from": len(found), "size": page_size})
            views = page.get("sessions") or []
            found.extend(views)
            if not views or len(found) >= int(page.get("total", 0)):
                return found

    async def submit_statement(self, session_id: int, code: str, kind: str | None = None) -> Statement:
        clean = validate_statement_request({"code": code, "kind": kind})
        return await self._json("POST", statement_path(session_id), json=clean, expect=(200, 201))

    async def run_statement(
        self,
        session_id: int,
        code: str,
        kind: str | None = None,
        *,
        polling_interval: float = 10.0,
        timeout: float | None = None,
        on_progress: Callable[[Statement], None] | None = None,
    ) -> Statement:
        """Submit and wait, as LivyHook.run_statement: cancelled and WaitTimeout at `timeout`."""
        statement = await self.submit_statement(session_id, code, kind)
        return await self.wait_for_statement(
            session_id, statement, polling_interval=polling_interval, timeout=timeout, on_progress=on_progress
        )

    async def get_session(self, key: int | str) -> SessionView:
        return await self._json("GET", session_path(key))

    async def get_session_state(self, key: int | str, wait: float | None = None) -> str:
        return await self._state(SESSIONS_PATH, key, wait)

    async def read_session_log(self, key: int | str, offset: int = 0, page_size: int = 1000) -> tuple[list[str], int]:
        return await self._read_log(SESSIONS_PATH, key, offset, page_size)

    async def delete_session(self, key: int | str) -> bool:
        return await self._delete(SESSIONS_PATH, key)

    async def get_statement(self, session_id: int, statement_id: int, wait: float | None = None) -> Statement:
        return await self._json("GET", statement_path(session_id, statement_id), params=wait_params(wait), held=wait or 0.0)

    async def cancel_statement(self, session_id: int, statement_id: int) -> None:
        await self._json("POST", statement_path(session_id, statement_id, "cancel"))

    async def wait_for_session(self, session_id: int, polling_interval: float = 10.0, timeout: float | None = None) -> str:
        """As LivyHook.wait_for_session: the same waiter, awaited."""
        waiter = session_up(session_id, polling_interval, timeout)
        return await adrive(waiter, lambda wait: self.get_session_state(session_id, wait))

    async def wait_for_statement(
        self,
        session_id: int,
        statement: Statement,
        *,
        polling_interval: float = 10.0,
        timeout: float | None = None,
        on_progress: Callable[[Statement], None] | None = None,
    ) -> Statement:
        """As LivyHook.wait_for_statement: the same waiter, so a statement past its timeout is cancelled here too."""
        waiter = statement_done(session_id, statement, polling_interval, timeout, on_progress)
        poll = lambda wait: self.get_statement(session_id, statement["id"], wait)  # noqa: E731
        return await adrive(waiter, poll, cancel=lambda: self.cancel_quietly(session_id, statement["id"]))

    async def cancel_quietly(self, session_id: int, statement_id: int) -> None:
        try:
            await self.cancel_statement(session_id, statement_id)
        except LivyError as err:
            self.log.warning("Could not cancel statement %s of session %s: %s", statement_id, session_id, err)
