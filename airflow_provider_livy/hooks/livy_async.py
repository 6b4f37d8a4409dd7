"""LivyAsyncHook: the calls the trigger makes, on httpx, with the same settings and retry policy as LivyHook.

The retry policy is LivyHook's: reads, DELETE and a cancel are repeated, a POST that may have
created something is not. (Our triggers never create nor submit: a restarted triggerer would do it
twice.) A connection with `auth_kind = class` needs an httpx.Auth class in deferrable mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from airflow.sdk import BaseHook

from airflow_provider_livy.hooks.auth import httpx_auth
from airflow_provider_livy.hooks.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_RETRIES,
    LivyError,
    LivySettings,
    batch_path,
    default_headers,
    describe,
    error_message,
    family_path,
    log_step,
    next_retry,
    session_path,
    settings_from_connection,
    statement_path,
    wait_params,
)
from airflow_provider_livy.hooks.official import (
    TERMINAL_BATCH_STATES,
    BatchState,
    auth_from_type,
    batch_state,
    post_batch_body,
    with_options,
)
from airflow_provider_livy.hooks.waiting import adrive, session_up, statement_done
from airflow_provider_livy.protocol import (
    BATCHES_PATH,
    SESSIONS_PATH,
    BatchView,
    SessionView,
    Statement,
    validate_session_request,
    validate_statement_request,
)

LIST_PAGE = 100


class LivyAsyncHook(BaseHook):
    """The trigger's calls on httpx. Takes the official async hook's arguments (`extra_options`: `verify`,
    `timeout`; `extra_headers`; `endpoint_prefix`) and also `auth_type`, an httpx.Auth class or its dotted path."""

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "livy_batch"
    hook_name = "Livy batch server (async)"
    TERMINAL_STATES = TERMINAL_BATCH_STATES

    def __init__(
        self,
        livy_conn_id: str = DEFAULT_CONN_ID,
        extra_options: dict[str, Any] | None = None,
        extra_headers: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        auth_type: Any | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        super().__init__()
        self.livy_conn_id = livy_conn_id
        self.extra_options = dict(extra_options or {})
        self.extra_headers = {str(k): str(v) for k, v in (extra_headers or {}).items()}
        self.endpoint_prefix = endpoint_prefix
        self.auth_type = auth_type
        self.retries = retries
        self._settings: LivySettings | None = None
        self._client: httpx.AsyncClient | None = None

    async def settings(self) -> LivySettings:
        if self._settings is None:
            settings = settings_from_connection(await self.aget_connection(self.livy_conn_id))
            self._settings = with_options(settings, self.extra_options, self.endpoint_prefix)
        return self._settings

    async def client(self) -> httpx.AsyncClient:
        if self._client is None:
            s = await self.settings()
            auth = auth_from_type(self.auth_type, httpx.Auth, s.login, s.password) or httpx_auth(s)
            self._client = httpx.AsyncClient(
                base_url=s.base_url,
                headers=default_headers(s) | self.extra_headers,
                verify=s.verify,
                auth=auth,
                timeout=s.timeout,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(
        self, method: str, path: str, expect: tuple[int, ...] = (200,), held: float = 0.0, **kwargs: Any
    ) -> httpx.Response:
        """`held`: how long the server may hold the answer on purpose (a long poll), added to the timeout."""
        client = await self.client()
        if held:
            kwargs["timeout"] = (await self.settings()).timeout + held
        attempt = 0
        while True:
            try:
                response = await client.request(method, path, **kwargs)
            except httpx.TransportError as err:
                never_sent = isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout))
                delay = next_retry(method, attempt, self.retries, never_sent=never_sent)
                if delay is None:
                    raise LivyError(f"Livy {method} {client.base_url}{path} failed: {err!r}") from err
                self.log.warning("Livy %s %s failed (%r); retry %d of %d", method, path, err, attempt + 1, self.retries)
            else:
                if response.status_code in expect:
                    return response
                retry_after = response.headers.get("Retry-After")
                delay = next_retry(method, attempt, self.retries, status=response.status_code, retry_after=retry_after)
                if delay is None:
                    raise self._error(method, response)
            await asyncio.sleep(delay)
            attempt += 1

    @staticmethod
    def _error(method: str, response: httpx.Response) -> LivyError:
        try:
            body = response.json()
        except ValueError:
            body = None
        msg = error_message(response.status_code, body, response.text)
        return LivyError(describe(method, str(response.url), response.status_code, msg), response.status_code, msg)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise LivyError(f"Livy {method} {path} answered {response.status_code} with a body that is not JSON") from None

    # --- what batches and sessions share -------------------------------------------------------
    async def _state(self, family: str, key: int | str, wait: float | None) -> str:
        return (await self._json("GET", family_path(family, key, "state"), params=wait_params(wait), held=wait or 0.0))["state"]

    async def _read_log(self, family: str, key: int | str, offset: int, page_size: int) -> tuple[list[str], int]:
        lines: list[str] = []
        while True:
            page = await self._json("GET", family_path(family, key, "log"), params={"from": offset, "size": page_size})
            new, offset, done = log_step(page, offset)
            lines.extend(new)
            if done:
                return lines, offset

    async def _delete(self, family: str, key: int | str) -> bool:
        """False when it was already gone, which counts as success."""
        return (await self._call("DELETE", family_path(family, key), expect=(200, 204, 404))).status_code != 404

    # --- batches -------------------------------------------------------------------------------------
    async def get_batch(self, session_id: int | str) -> BatchView:
        return await self._json("GET", batch_path(session_id))

    async def get_batch_state(self, session_id: int | str, *, wait: float | None = None) -> BatchState | str:
        """The state; with `wait`, our server answers at its next change or after `wait` seconds (a long poll)."""
        return batch_state(await self._state(BATCHES_PATH, session_id, wait))

    async def read_log(self, key: int | str, offset: int = 0, page_size: int = 1000) -> tuple[list[str], int]:
        """The driver log lines after line `offset`, paging until caught up, and the new offset."""
        return await self._read_log(BATCHES_PATH, key, offset, page_size)

    async def delete_batch(self, session_id: int | str) -> bool:
        return await self._delete(BATCHES_PATH, session_id)

    # --- the official async hook's batch methods ---------------------------------------------------
    build_post_batch_body = staticmethod(post_batch_body)

    async def run_method(
        self, endpoint: str, method: str | None = None, data: Any | None = None, headers: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Any call on the connection's URL, answered as the official hook does: {"status": "success",
        "response": <JSON>} or {"status": "error", "response": <message>, "Status Code": <status>}."""
        method = method or "POST"
        if method not in {"GET", "PATCH", "POST", "PUT", "DELETE", "HEAD"}:
            return {"status": "error", "response": f"Invalid http method {method}"}
        payload = {"params": data} if method in ("GET", "HEAD") else {"json": data}
        try:
            body = await self._json(method, "/" + endpoint.lstrip("/"), headers=headers, **payload)
        except LivyError as err:
            return {"status": "error", "response": err.msg or str(err), "Status Code": err.status}
        return {"status": "success", "response": body}

    async def get_batch_logs(self, session_id: int | str, log_start_position: int, log_batch_size: int) -> dict[str, Any]:
        """One page of the driver log, as {"status": "success", "response": {"from", "total", "log"}}."""
        return await self.run_method(batch_path(session_id, "log"), "GET", {"from": log_start_position, "size": log_batch_size})

    async def dump_batch_logs(self, session_id: int | str) -> list[str]:
        """Log the whole driver log and return its lines."""
        lines, _ = await self.read_log(session_id)
        for line in lines:
            self.log.info(line)
        return lines

    # --- interactive sessions ------------------------------------------------------------------------
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
