"""LivyAsyncHook: the calls the trigger makes, on httpx, with the same settings and retry policy as LivyHook.
Its methods of the official names (`get_batch_state`, `get_batch_logs`, `dump_batch_logs`, `run_method`,
`build_post_batch_body`) answer in the official async hook's shapes; our own calls have names of their own
(`poll_batch_state`, `discard_batch`, `read_log`...). HTTP is in `livy_async_http`, sessions in
`livy_async_sessions`.
"""

from __future__ import annotations

import http
from typing import Any

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError, batch_path
from airflow_provider_livy.hooks.livy_async_sessions import LivyAsyncSessionCalls
from airflow_provider_livy.hooks.official import (
    TERMINAL_BATCH_STATES,
    BatchState,
    batch_state,
    post_batch_body,
    session_id_of,
)
from airflow_provider_livy.protocol import BATCHES_PATH, BatchView


def reason_phrase(status: int) -> str:
    """What aiohttp's ClientResponseError.message holds for a status: its reason phrase."""
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return str(status)


class LivyAsyncHook(LivyAsyncSessionCalls):
    """The trigger's calls on httpx. Takes the official async hook's arguments (`extra_options`: `verify`,
    `timeout`; `extra_headers`; `endpoint_prefix`) and also `auth_type`, an httpx.Auth class or its dotted path."""

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "livy_batch"
    hook_name = "Livy batch server (async)"
    TERMINAL_STATES = TERMINAL_BATCH_STATES

    # --- our batch calls -----------------------------------------------------------------------------
    async def get_batch(self, session_id: int | str) -> BatchView:
        return await self._json("GET", batch_path(session_id))

    async def poll_batch_state(self, key: int | str, wait: float | None = None) -> BatchState | str:
        """The state; with `wait`, our server answers at its next change or after `wait` seconds (a long poll)."""
        return batch_state(await self._state(BATCHES_PATH, key, wait))

    async def read_log(self, key: int | str, offset: int = 0, page_size: int = 1000) -> tuple[list[str], int]:
        """The driver log lines after line `offset`, paging until caught up, and the new offset."""
        return await self._read_log(BATCHES_PATH, key, offset, page_size)

    async def discard_batch(self, key: int | str) -> bool:
        """DELETE /batches/{id}. False when it was already gone, which counts as success."""
        return await self._delete(BATCHES_PATH, key)

    async def delete_batch(self, session_id: int | str) -> dict[str, Any]:
        """DELETE /batches/{id}, answered as LivyHook.delete_batch: the server's answer; a batch already gone raises."""
        return await self._json("DELETE", batch_path(session_id_of(session_id)))

    # --- the official async hook's batch methods ---------------------------------------------------
    build_post_batch_body = staticmethod(post_batch_body)

    async def run_method(
        self, endpoint: str, method: str | None = None, data: Any | None = None, headers: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Any call on the connection's URL, answered as the official hook does: {"status": "success",
        "response": <JSON>}, or for an error status {"status": "error", "Response": {<reason>}, "Status Code":
        {<status>}} (one-element sets, as there) and "response", the server's message (which the official
        get_batch_logs reads but never gets)."""
        method = method or "POST"
        if method not in {"GET", "PATCH", "POST", "PUT", "DELETE", "HEAD"}:
            return {"status": "error", "response": f"Invalid http method {method}"}
        payload = {"params": data} if method in ("GET", "HEAD") else {"json": data}
        try:
            body = await self._json(method, "/" + endpoint.lstrip("/"), headers=headers, **payload)
        except LivyError as err:
            if err.status is None:  # no answer at all: raised, as the official hook lets aiohttp's error out
                raise
            reason = reason_phrase(err.status)
            return {"Response": {reason}, "Status Code": {err.status}, "status": "error", "response": err.msg or reason}
        return {"status": "success", "response": body}

    async def get_batch_state(self, session_id: int | str) -> dict[str, Any]:
        """The state as the official async hook answers: {"batch_state": BatchState, "response": ..., "status":
        "success"}, or {"batch_state": "error", "response": <run_method's error>, "status": "error"}."""
        result = await self.run_method(batch_path(session_id_of(session_id), "state"), "GET")
        if result["status"] == "error":
            return {"batch_state": "error", "response": result, "status": "error"}
        if "state" not in result["response"]:
            return {"batch_state": "error", "response": f"Unable to get state for batch with id: {session_id}", "status": "error"}
        state = batch_state(result["response"]["state"])
        return {"batch_state": state, "response": "successfully fetched the batch state.", "status": "success"}

    async def get_batch_logs(self, session_id: int | str, log_start_position: int, log_batch_size: int) -> dict[str, Any]:
        """One page of the driver log, as {"response": {"id", "from", "total", "log"}, "status": "success"};
        {"response": <the server's message>, "status": "error"} when the server refuses."""
        params = {"from": log_start_position, "size": log_batch_size}
        result = await self.run_method(batch_path(session_id_of(session_id), "log"), "GET", params)
        return {"response": result["response"], "status": result["status"]}

    async def dump_batch_logs(self, session_id: int | str) -> list[str]:
        """Log the whole driver log and return its lines."""
        lines, _ = await self.read_log(session_id_of(session_id))
        for line in lines:
            self.log.info(line)
        return lines
