"""LivyHook: the batch and session API over one pooled requests.Session; with LivyAsyncHook and BatchState,
the names of the official provider's hooks module and its public methods (`post_batch`, `get_batch_state`...).

Retry policy, in one place:
- GET and DELETE are repeated with backoff on connection errors and on 502/503/504, waiting
  as long as the server's Retry-After says. Both are safe to repeat: they change nothing, or
  delete what is already gone (a DELETE answered 404 counts as success).
- POST /batches is repeated only when the server cannot have created anything: the connection
  was never established, or our server answered 503 *with* Retry-After (it says so only when
  it refused before creating). A read timeout, 502 or 504 after a POST is not repeated: the
  batch may exist. The operator always sends a unique batch name, so even then it finds the
  batch by name instead of creating a second one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterator
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter

from airflow_provider_livy.hooks.auth import requests_auth
from airflow_provider_livy.hooks.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_RETRIES,
    LivyConfigError,
    LivyError,
    LivySettings,
    default_headers,
    describe,
    error_message,
    family_path,
    log_step,
    next_retry,
    settings_from_connection,
    statement_path,
    wait_params,
)
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.hooks.official import (
    TERMINAL_BATCH_STATES,
    BatchState,
    auth_from_type,
    batch_state,
    post_batch_body,
    with_options,
    with_retry_args,
)
from airflow_provider_livy.hooks.waiting import drive, session_up, statement_done
from airflow_provider_livy.protocol import (
    BATCHES_PATH,
    DEFAULT_LOG_PAGE,
    SESSIONS_PATH,
    BatchView,
    SessionView,
    Statement,
    validate_batch_request,
    validate_session_request,
    validate_statement_request,
)

__all__ = ["BatchState", "LivyAsyncHook", "LivyHook"]  # the official module's names, for a one-line migration
LIST_PAGE = 100
POOL_SIZE = 4


class LivyHook(BaseHook):
    """Talks to a Livy-compatible server (ours or Apache Livy) about batches and interactive sessions.

    :param livy_conn_id: a `livy_batch` connection, or any connection with a host (the official
        provider's `livy` type works unchanged).
    :param extra_options: the official hook's HttpHook options: `verify`, `timeout`, `proxies`, `cert`.
    :param extra_headers: headers added to the connection's.
    :param auth_type: a requests auth class (or its dotted path), called as HttpHook does:
        `auth_type(login, password)` when the connection has a login, else `auth_type()`.
    :param endpoint_prefix: a path added to the connection's URL (a Livy behind a gateway).
    :param auth: a requests auth object that overrides the connection's (e.g. Kerberos).
    :param retries: how many times a retryable call is repeated before giving up.
    """

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "livy_batch"
    hook_name = "Livy batch server (airflow-provider-livy)"
    TERMINAL_STATES = TERMINAL_BATCH_STATES

    def __init__(
        self,
        livy_conn_id: str = DEFAULT_CONN_ID,
        extra_options: dict[str, Any] | None = None,
        extra_headers: dict[str, Any] | None = None,
        auth_type: Any | None = None,
        endpoint_prefix: str | None = None,
        *,
        auth: requests.auth.AuthBase | None = None,
        retries: int = DEFAULT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__()
        self.livy_conn_id = livy_conn_id
        self.extra_options = dict(extra_options or {})
        self.extra_headers = {str(k): str(v) for k, v in (extra_headers or {}).items()}
        self.auth_type = auth_type
        self.endpoint_prefix = endpoint_prefix
        self._auth = auth
        self.retries = retries
        self._sleep = sleep

    @cached_property
    def settings(self) -> LivySettings:
        settings = settings_from_connection(self.get_connection(self.livy_conn_id))
        return with_options(settings, self.extra_options, self.endpoint_prefix)

    @cached_property
    def session(self) -> requests.Session:
        """One session per hook: keep-alive connections are reused across the many polling calls."""
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers.update(default_headers(self.settings) | self.extra_headers)
        session.verify = self.settings.verify
        session.proxies.update(self.extra_options.get("proxies") or {})
        session.cert = self.extra_options.get("cert")
        s = self.settings
        typed = auth_from_type(self.auth_type, requests.auth.AuthBase, s.login, s.password)
        session.auth = self._auth or typed or self._connection_auth()
        return session

    def get_conn(self) -> requests.Session:
        return self.session

    def _connection_auth(self) -> requests.auth.AuthBase | None:
        return requests_auth(self.settings)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()

    # --- the one place HTTP happens ------------------------------------------------------------
    def _call(
        self, method: str, path: str, *, expect: Container[int] = (200,), held: float = 0.0, **kwargs: Any
    ) -> requests.Response:
        """Send one call with the retry policy in the module docstring; raise LivyError if it fails.

        `held`: how long the server may hold the answer on purpose (a long poll), added to the timeout.
        """
        url = self.settings.url(path)
        timeout = self.settings.timeout + held
        attempt = 0
        while True:
            try:
                response = self.session.request(method, url, timeout=timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as err:
                # ConnectTimeout is both; a read timeout or a dropped connection may follow a sent request
                never_sent = isinstance(err, requests.ConnectTimeout) or "NewConnectionError" in repr(err)
                delay = next_retry(method, attempt, self.retries, never_sent=never_sent)
                if delay is None:
                    failure = f"timed out after {timeout:g}s" if isinstance(err, requests.Timeout) else f"failed: {err}"
                    raise LivyError(f"Livy {method} {url} {failure}") from err
                self.log.warning("Livy %s %s failed (%s); retry %d of %d", method, url, err, attempt + 1, self.retries)
            else:
                if response.status_code in expect:
                    return response
                retry_after = response.headers.get("Retry-After")
                delay = next_retry(method, attempt, self.retries, status=response.status_code, retry_after=retry_after)
                if delay is None:
                    raise self._error(method, url, response)
                self.log.warning(
                    "Livy %s %s answered %d%s; retry %d of %d",
                    method,
                    url,
                    response.status_code,
                    f" (Retry-After {retry_after})" if retry_after else "",
                    attempt + 1,
                    self.retries,
                )
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _error(method: str, url: str, response: requests.Response) -> LivyError:
        try:
            body = response.json()
        except ValueError:
            body = None
        msg = error_message(response.status_code, body, response.text)
        return LivyError(describe(method, url, response.status_code, msg), response.status_code, msg)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise LivyError(f"Livy {method} {path} answered {response.status_code} with a body that is not JSON") from None

    # --- what batches and sessions share -------------------------------------------------------
    def _get(self, family: str, key: int | str) -> dict[str, Any]:
        return self._json("GET", family_path(family, key))

    def _find(self, family: str, key: int | str) -> dict[str, Any] | None:
        try:
            return self._get(family, key)
        except LivyError as err:
            if err.status == 404:
                return None
            raise

    def _state(self, family: str, key: int | str, wait: float | None) -> str:
        return self._json("GET", family_path(family, key, "state"), params=wait_params(wait), held=wait or 0.0)["state"]

    def _list(self, path: str, page_size: int) -> Iterator[Any]:
        start = 0
        while True:
            page = self._json("GET", path, params={"from": start, "size": page_size})
            sessions = page.get("sessions") or []
            yield from sessions
            start += len(sessions)
            if not sessions or start >= int(page.get("total", 0)):
                return

    def _log_page(self, family: str, key: int | str, start: int | None, size: int) -> dict[str, Any]:
        params = {"size": size} if start is None else {"from": start, "size": size}
        return self._json("GET", family_path(family, key, "log"), params=params)

    def _read_log(self, family: str, key: int | str, offset: int, page_size: int) -> tuple[list[str], int]:
        lines: list[str] = []
        while True:
            new, offset, done = log_step(self._log_page(family, key, offset, page_size), offset)
            lines.extend(new)
            if done:
                return lines, offset

    def _delete(self, family: str, key: int | str) -> bool:
        return self._call("DELETE", family_path(family, key), expect=(200, 204, 404)).status_code != 404

    # --- the batch API -----------------------------------------------------------------------------
    def submit_batch(self, body: dict[str, Any]) -> BatchView:
        """POST /batches with a validated body; returns the new batch's view."""
        clean = validate_batch_request(body)
        return self._json("POST", BATCHES_PATH, json=clean, expect=(200, 201))

    def get_batch(self, session_id: int | str) -> BatchView:
        """GET /batches/{id}, or by name for a non-numeric key."""
        return self._get(BATCHES_PATH, session_id)

    def find_batch(self, key: int | str) -> BatchView | None:
        """Like get_batch, but None when the server does not hold it."""
        return self._find(BATCHES_PATH, key)

    def get_batch_state(
        self, session_id: int | str, retry_args: dict[str, Any] | None = None, *, wait: float | None = None
    ) -> BatchState | str:
        """The state; with `wait`, our server answers at its next change or after `wait` seconds (a long poll).
        `retry_args`: the official tenacity arguments, on top of our retry rule."""
        state = with_retry_args(retry_args, lambda: self._state(BATCHES_PATH, session_id, wait))
        return batch_state(state)

    def list_batches(self, page_size: int = LIST_PAGE) -> Iterator[BatchView]:
        """Every batch the server holds, fetched a page at a time."""
        return self._list(BATCHES_PATH, page_size)

    def get_log_page(self, key: int | str, start: int | None = None, size: int = DEFAULT_LOG_PAGE) -> dict[str, Any]:
        """GET /batches/{id}/log. Without `start`, Livy returns the last `size` lines."""
        return self._log_page(BATCHES_PATH, key, start, size)

    def read_log(self, key: int | str, offset: int = 0, page_size: int = 1000) -> tuple[list[str], int]:
        """The driver log lines after line `offset`, paging until caught up, and the new offset."""
        return self._read_log(BATCHES_PATH, key, offset, page_size)

    def tail_log(self, key: int | str, count: int = 20) -> list[str]:
        return list(self.get_log_page(key, None, count).get("log") or [])

    def delete_batch(self, session_id: int | str) -> bool:
        """DELETE /batches/{id}: kill it if running, then forget it. False when it was already gone."""
        return self._delete(BATCHES_PATH, session_id)

    # --- the official hook's batch methods ---------------------------------------------------------
    build_post_batch_body = staticmethod(post_batch_body)

    def post_batch(self, *args: Any, **kwargs: Any) -> int:
        """Submit a batch from `build_post_batch_body`'s arguments; returns its id."""
        body = self.build_post_batch_body(*args, **kwargs)
        self.log.info("Submitting job %s to %s", body, self.settings.base_url)
        return int(self.submit_batch(body)["id"])

    def get_batch_logs(self, session_id: int | str, log_start_position: int, log_batch_size: int) -> dict[str, Any]:
        """One page of the driver log: {"id", "from", "total", "log"}."""
        return self.get_log_page(session_id, log_start_position, log_batch_size)

    def dump_batch_logs(self, session_id: int | str) -> None:
        """Copy the whole driver log into this task's log."""
        lines, _ = self.read_log(session_id)
        for line in lines:
            self.log.info(line)

    def run_method(
        self,
        endpoint: str,
        method: str = "GET",
        data: Any | None = None,
        headers: dict[str, Any] | None = None,
        retry_args: dict[str, Any] | None = None,
    ) -> requests.Response:
        """Any call on the connection's URL; the response whatever its status, as the official hook returns it.
        `data` is the query of a GET or HEAD, else the body."""
        if method not in ("GET", "POST", "PUT", "DELETE", "HEAD"):
            raise ValueError(f"Invalid http method '{method}'")
        payload = {"params": data} if method in ("GET", "HEAD") else {"data": data}
        path = "/" + endpoint.lstrip("/")
        return with_retry_args(retry_args, lambda: self._call(method, path, expect=range(100, 600), headers=headers, **payload))

    # --- the interactive session API -------------------------------------------------------------
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

    def test_connection(self) -> tuple[bool, str]:
        """The connections UI's Test button: can we list batches? One try, so a dead server is reported at once
        instead of after the ~15 s of backoff a task's call would wait."""
        retries, self.retries = self.retries, 0
        try:
            page = self._json("GET", BATCHES_PATH, params={"from": 0, "size": 1})
        except (LivyError, LivyConfigError) as err:
            return False, str(err)
        finally:
            self.retries = retries
            self.close()
        return True, f"Connected to {self.settings.base_url}: the server holds {page.get('total', 0)} batch(es)"
