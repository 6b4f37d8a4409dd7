"""LivyHook: the batch API, and with LivyAsyncHook and BatchState the names of the official provider's hooks
module. Its public methods of the official names (`post_batch`, `get_batch`, `get_batch_state`,
`delete_batch`, `get_batch_logs`, `dump_batch_logs`, `run_method`, `build_post_batch_body`) take, return
and raise what the official ones do; our own calls have names of their own (`submit_batch`, `find_batch`,
`poll_batch_state`, `discard_batch`, `read_log`...). The HTTP and retry policy is in `livy_http`, the
interactive session calls in `livy_sessions`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError, family_path
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.hooks.livy_sessions import LIST_PAGE, LivySessionCalls
from airflow_provider_livy.hooks.official import (
    TERMINAL_BATCH_STATES,
    BatchState,
    batch_state,
    post_batch_body,
    session_id_of,
    with_retry_args,
)
from airflow_provider_livy.protocol import BATCHES_PATH, DEFAULT_LOG_PAGE, BatchView, validate_batch_request

__all__ = ["BatchState", "LivyAsyncHook", "LivyHook"]  # the official module's names, for a one-line migration


class LivyHook(LivySessionCalls):
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

    # --- our batch calls -----------------------------------------------------------------------------
    def submit_batch(self, body: dict[str, Any]) -> BatchView:
        """POST /batches with a validated body; returns the new batch's view."""
        clean = validate_batch_request(body)
        return self._json("POST", BATCHES_PATH, json=clean, expect=(200, 201))

    def find_batch(self, key: int | str) -> BatchView | None:
        """The batch's view by id or name, or None when the server does not hold it."""
        return self._find(BATCHES_PATH, key)

    def poll_batch_state(self, key: int | str, wait: float | None = None) -> BatchState | str:
        """The state; with `wait`, our server answers at its next change or after `wait` seconds (a long poll).
        A state this version does not know stays the plain string."""
        return batch_state(self._state(BATCHES_PATH, key, wait))

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

    def discard_batch(self, key: int | str) -> bool:
        """DELETE /batches/{id}: kill it if running, then forget it. False when it was already gone (a success)."""
        return self._delete(BATCHES_PATH, key)

    # --- the official hook's batch methods ---------------------------------------------------------
    build_post_batch_body = staticmethod(post_batch_body)

    def post_batch(self, *args: Any, **kwargs: Any) -> int:
        """Submit a batch from `build_post_batch_body`'s arguments; returns its id."""
        body = self.build_post_batch_body(*args, **kwargs)
        self.log.info("Submitting job %s to %s", body, self.settings.base_url)
        return int(self.submit_batch(body)["id"])

    def get_batch(self, session_id: int | str) -> BatchView:
        """GET /batches/{id}: the batch's view. TypeError for an id that is not an integer (`find_batch` takes names)."""
        return self._get(BATCHES_PATH, session_id_of(session_id))

    def get_batch_state(self, session_id: int | str, retry_args: dict[str, Any] | None = None) -> BatchState | str:
        """The state, as a BatchState. `retry_args`: the official tenacity arguments, on top of our retry rule."""
        path = family_path(BATCHES_PATH, session_id_of(session_id), "state")
        answer = with_retry_args(retry_args, lambda: self._json("GET", path))
        if "state" not in answer:
            raise LivyError(f"Unable to get state for batch with id: {session_id}")
        return batch_state(answer["state"])

    def delete_batch(self, session_id: int | str) -> dict[str, Any]:
        """DELETE /batches/{id}: kill it if running, then forget it; the server's answer ({"msg": "deleted"}).
        A batch already gone raises, as there (`discard_batch` counts that as done)."""
        return self._json("DELETE", family_path(BATCHES_PATH, session_id_of(session_id)))

    def get_batch_logs(self, session_id: int | str, log_start_position: int, log_batch_size: int) -> dict[str, Any]:
        """One page of the driver log: {"id", "from", "total", "log"}."""
        return self.get_log_page(session_id_of(session_id), log_start_position, log_batch_size)

    def dump_batch_logs(self, session_id: int | str) -> None:
        """Copy the whole driver log into this task's log."""
        lines, _ = self.read_log(session_id_of(session_id))
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
        """Any call on the connection's URL (without the hook's endpoint prefix, as there); the response whatever
        its status unless `extra_options` sets `check_response`. `data` is the query of a GET or HEAD, else the body."""
        if method not in ("GET", "POST", "PUT", "DELETE", "HEAD"):
            raise ValueError(f"Invalid http method '{method}'")
        verb, self.method = self.method, method
        try:
            options = {"check_response": False} | self.extra_options  # the official one checks if any option is set
            if retry_args:
                return self.run_with_advanced_retry(retry_args, endpoint, data, headers, options)
            return self.run(endpoint, data, headers, options)
        finally:
            self.method = verb

    # --- the official hook's HttpHook methods --------------------------------------------------------
    method = "POST"  # the verb `run` sends, as on the official hook

    def url_from_endpoint(self, endpoint: str | None) -> str:
        """The connection's URL and `endpoint`, as HttpHook joins them: the hook's endpoint prefix is not added
        (the official hook adds it only in its batch methods)."""
        return self.connection_settings.base_url + "/" + (endpoint or "").lstrip("/")

    def check_response(self, response: requests.Response) -> None:
        """An AirflowException (a LivyError) "<status>:<reason>" for a 4xx or 5xx answer, as HttpHook raises."""
        if response.status_code >= 400:
            self.log.error("HTTP error: %s", response.reason)
            raise LivyError(f"{response.status_code}:{response.reason}", response.status_code, response.text)

    def run(
        self,
        endpoint: str | None = None,
        data: Any | None = None,
        headers: dict[str, Any] | None = None,
        extra_options: dict[str, Any] | None = None,
        **request_kwargs: Any,
    ) -> requests.Response:
        """HttpHook.run: `self.method` on the connection's URL and `endpoint` (`data` as the query of a GET or
        HEAD, else the body) under our retry rule; checked by `check_response` unless `check_response=False`."""
        options = extra_options or {}
        payload = {"params": data} if self.method in ("GET", "HEAD") else {"data": data}
        path = "/" + (endpoint or "").lstrip("/")
        servers = self.connection_settings.base_urls
        response = self._call(
            self.method, path, expect=range(100, 600), servers=servers, headers=headers, **payload, **request_kwargs
        )
        if options.get("check_response", True):
            self.check_response(response)
        return response

    def run_and_check(
        self, session: requests.Session, prepped_request: requests.PreparedRequest, extra_options: dict[Any, Any]
    ) -> requests.Response:
        """HttpHook.run_and_check: send a prepared request on `session` and check the answer (once: our retry
        rule is `run`'s)."""
        settings = session.merge_environment_settings(
            prepped_request.url, proxies=session.proxies, stream=session.stream, verify=session.verify, cert=session.cert
        )
        timeout, redirects = extra_options.get("timeout", self.settings.timeout), extra_options.get("allow_redirects", True)
        response = session.send(prepped_request, timeout=timeout, allow_redirects=redirects, **settings)
        if extra_options.get("check_response", True):
            self.check_response(response)
        return response

    def run_with_advanced_retry(self, _retry_args: dict[Any, Any], *args: Any, **kwargs: Any) -> requests.Response:
        """HttpHook.run_with_advanced_retry: `run` under tenacity's `_retry_args`."""
        return with_retry_args(_retry_args, lambda: self.run(*args, **kwargs))
