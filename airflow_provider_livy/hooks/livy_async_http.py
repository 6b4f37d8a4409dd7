"""LivyAsyncHttp: the one place the async hook speaks HTTP (httpx), and the calls batches and sessions share.

The retry policy is LivyHook's: reads, DELETE and a cancel are repeated, a POST that may have
created something is not. (Our triggers never create nor submit: a restarted triggerer would do it
twice.) A connection with `auth_kind = class` needs an httpx.Auth class in deferrable mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Container
from typing import Any

import httpx
from airflow.sdk import BaseHook

from airflow_provider_livy.hooks.auth import httpx_auth
from airflow_provider_livy.hooks.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_RETRIES,
    FAILOVER_WAIT,
    LivyError,
    LivySettings,
    Tries,
    current_server,
    default_headers,
    describe,
    error_message,
    family_path,
    log_step,
    next_server,
    next_try,
    reattach_by_name,
    settings_from_connection,
    wait_params,
)
from airflow_provider_livy.hooks.official import auth_from_type, with_options


class LivyAsyncHttp(BaseHook):
    """The one httpx client, the retry policy and what batches and sessions share; LivyAsyncHook's arguments."""

    def __init__(
        self,
        livy_conn_id: str = DEFAULT_CONN_ID,
        extra_options: dict[str, Any] | None = None,
        extra_headers: dict[str, Any] | None = None,
        endpoint_prefix: str | None = None,
        auth_type: Any | None = None,
        *,
        retries: int = DEFAULT_RETRIES,
        leader: str | None = None,
    ) -> None:
        super().__init__()
        self.livy_conn_id = livy_conn_id
        self.extra_options = dict(extra_options or {})
        self.extra_headers = {str(k): str(v) for k, v in (extra_headers or {}).items()}
        self.endpoint_prefix = endpoint_prefix
        self.auth_type = auth_type
        self.retries = retries
        self.leader = leader  # a group's server to start from when this process has asked none (`current_server`)
        self.failover_wait = FAILOVER_WAIT  # how long a call waits out a group with no leader (connection.py)
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
        self,
        method: str,
        path: str,
        expect: Container[int] = (200,),
        held: float = 0.0,
        reattach: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """`held`: how long the server may hold the answer on purpose (a long poll), added to the timeout.
        `reattach`: a POST with a name that may have created something is looked up by it first, as LivyHook's."""
        client = await self.client()
        settings = await self.settings()
        servers = settings.base_urls
        if held:
            kwargs["timeout"] = settings.timeout + held
        tries = Tries()
        while True:
            base = current_server(servers, self.leader)
            status, retry_after, never_sent, cause = None, None, False, None
            try:
                response = await client.request(method, base + path, **kwargs)
            except httpx.TransportError as err:
                never_sent = isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout))
                error, cause, what = LivyError(f"Livy {method} {base}{path} failed: {err!r}"), err, f"failed ({err!r})"
            else:
                status, retry_after = response.status_code, response.headers.get("Retry-After")
                if status in expect:
                    next_server(servers, base, status)
                    return response
                error = self._error(method, response)
                what = f"answered {status}" + (f" (Retry-After {retry_after})" if retry_after else "")
            next_server(servers, base, status)
            delay = next_try(
                method,
                tries,
                self.retries,
                servers,
                status=status,
                retry_after=retry_after,
                never_sent=never_sent,
                failover_wait=self.failover_wait,
            )
            if delay is None:
                found = await self._reattach(method, path, kwargs.get("json"), error, servers) if reattach else None
                if found is not None:
                    return found
                raise error from cause
            note = tries.note(self.retries, self.failover_wait)
            self.log.warning("Livy %s %s%s %s; %s", method, base, path, what, note)
            await asyncio.sleep(delay)

    async def _reattach(
        self, method: str, path: str, body: Any, error: LivyError, servers: tuple[str, ...]
    ) -> httpx.Response | None:
        """As LivyHook's: a create that may have reached a server of a group, looked up by its name, else sent once more."""
        name = reattach_by_name(method, body, error) if len(servers) > 1 else None
        if name is None:
            return None
        self.log.warning("%s; looking %s up by its name %r before sending it again", error, path, name)
        found = await self._call("GET", family_path(path, name), expect=(200, 404))
        if found.status_code == 200:
            return found
        return await self._call(method, path, expect=(200, 201), reattach=False, json=body)

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
