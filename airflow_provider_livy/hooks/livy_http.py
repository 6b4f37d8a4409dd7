"""LivyHttp: the one place the sync hook speaks HTTP, and the calls batches and sessions share.

Retry policy, in one place:
- GET and DELETE are repeated with backoff on connection errors and on 502/503/504, waiting
  as long as the server's Retry-After says. Both are safe to repeat: they change nothing, or
  delete what is already gone (a DELETE answered 404 counts as success).
- POST /batches is repeated only when the server cannot have created anything: the connection
  was never established, or our server answered 503 *with* Retry-After (it says so only when
  it refused before creating). A read timeout, 502 or 504 after a POST is not repeated: the
  batch may exist. The operator always sends a unique batch name, so even then it finds the
  batch by name instead of creating a second one.
- A connection that lists several servers (a group) sends each call to the one that last answered as
  the leader and moves on at a connection error, a 503 or a 307 (`next_server`); a named POST that may
  have reached a server is looked up by its name there before it is sent again.
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
    FAILOVER_WAIT,
    LivyConfigError,
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
from airflow_provider_livy.protocol import BATCHES_PATH, READY_PATH

POOL_SIZE = 4


class LivyHttp(BaseHook):
    """One pooled requests.Session to a Livy-compatible server (ours or Apache Livy), the retry policy, and
    the calls batches and sessions share. Its arguments are LivyHook's (documented there)."""

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
        leader: str | None = None,
    ) -> None:
        super().__init__()
        self.livy_conn_id = livy_conn_id
        self.extra_options = dict(extra_options or {})
        self.extra_headers = {str(k): str(v) for k, v in (extra_headers or {}).items()}
        self.auth_type = auth_type
        self.endpoint_prefix = endpoint_prefix
        self._auth = auth
        self.retries = retries
        self.failover_wait = FAILOVER_WAIT  # how long a call waits out a group with no leader (connection.py)
        self._sleep = sleep
        self.leader = leader  # a group's server to start from when this process has asked none (`current_server`)

    @cached_property
    def connection_settings(self) -> LivySettings:
        """The connection's own settings, without the hook's options and endpoint prefix."""
        return settings_from_connection(self.get_connection(self.livy_conn_id))

    @cached_property
    def settings(self) -> LivySettings:
        return with_options(self.connection_settings, self.extra_options, self.endpoint_prefix)

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

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None) -> requests.Session:
        """The pooled session, as HttpHook.get_conn returns it; `headers` are added to it, and of
        `extra_options` what a requests.Session holds (`verify`, `proxies`, `cert`)."""
        if headers:
            self.session.headers.update({str(k): str(v) for k, v in headers.items()})
        options = extra_options or {}
        if "verify" in options:
            self.session.verify = options["verify"]
        self.session.proxies.update(options.get("proxies") or {})
        if options.get("cert"):
            self.session.cert = options["cert"]
        return self.session

    def answering_server(self) -> str:
        """Of the connection's servers, the one calls go to: the one that answered last (a group's leader, or a
        standby that proxies to it)."""
        return current_server(self.settings.base_urls, self.leader)

    def leader_epoch(self) -> int | None:
        """The epoch of the group's leader behind the server calls go to, from `GET /ready`: that server's own when
        it leads, else the one of the leader it names (a standby proxies to it). None when no server says it leads,
        or the server is no group's (Apache Livy, a lone server)."""
        url = self.answering_server()
        for _hop in range(2):
            try:
                answer = self.session.get(url + READY_PATH, timeout=self.settings.timeout).json()
            except (requests.RequestException, ValueError):
                return None
            if not isinstance(answer, dict):
                return None
            if answer.get("role") == "leader":
                return answer["epoch"] if isinstance(answer.get("epoch"), int) else None
            url = answer.get("leader")
            if not isinstance(url, str) or not url:
                return None
        return None

    def _connection_auth(self) -> requests.auth.AuthBase | None:
        return requests_auth(self.settings)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()

    # --- the one place HTTP happens ------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        expect: Container[int] = (200,),
        held: float = 0.0,
        servers: tuple[str, ...] | None = None,
        reattach: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one call with the retry policy in the module docstring; raise LivyError if it fails.

        `held`: how long the server may hold the answer on purpose (a long poll), added to the timeout.
        `servers`: other base URLs than the hook's to put `path` on.
        `reattach`: a POST with a name that may have created something is looked up by that name before it is
        sent again (once).
        """
        servers = servers or self.settings.base_urls
        timeout = self.settings.timeout + held
        if len(servers) > 1:
            kwargs.setdefault("allow_redirects", False)  # a 307 moves on to the next server, with our headers
        tries = Tries()
        while True:
            base = current_server(servers, self.leader)
            url = base + path
            status, retry_after, never_sent, cause = None, None, False, None
            try:
                response = self.session.request(method, url, timeout=timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as err:
                # ConnectTimeout is both; a read timeout or a dropped connection may follow a sent request
                never_sent = isinstance(err, requests.ConnectTimeout) or "NewConnectionError" in repr(err)
                failure = f"timed out after {timeout:g}s" if isinstance(err, requests.Timeout) else f"failed: {err}"
                error, cause, what = LivyError(f"Livy {method} {url} {failure}"), err, f"failed ({err})"
            else:
                status, retry_after = response.status_code, response.headers.get("Retry-After")
                if status in expect:
                    next_server(servers, base, status)
                    return response
                error = self._error(method, url, response)
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
                found = self._reattach(method, path, kwargs.get("json"), error, servers) if reattach else None
                if found is not None:
                    return found
                raise error from cause
            self.log.warning("Livy %s %s %s; %s", method, url, what, tries.note(self.retries, self.failover_wait))
            self._sleep(delay)

    def _reattach(
        self, method: str, path: str, body: Any, error: LivyError, servers: tuple[str, ...]
    ) -> requests.Response | None:
        """A create that failed where it may have reached a server of a group, looked up by its name on the
        connection's next server: the record's view when it exists, else the create sent once more (the name
        guards it: a second one is refused as a duplicate)."""
        name = reattach_by_name(method, body, error) if len(servers) > 1 else None
        if name is None:
            return None
        self.log.warning("%s; looking %s up by its name %r before sending it again", error, path, name)
        found = self._call("GET", family_path(path, name), expect=(200, 404), servers=servers)
        if found.status_code == 200:
            return found
        return self._call(method, path, expect=(200, 201), servers=servers, reattach=False, json=body)

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

    def test_connection(self) -> tuple[bool, str]:
        """The connections UI's Test button: can we list batches? One try per server, so a dead one is reported at once
        instead of after the ~15 s of backoff a task's call would wait."""
        retries, self.retries = self.retries, len(self.settings.base_urls) - 1  # each server of a group once
        self.failover_wait = 0.0  # and no wait for a group's leader
        try:
            page = self._json("GET", BATCHES_PATH, params={"from": 0, "size": 1})
        except (LivyError, LivyConfigError) as err:
            return False, str(err)
        finally:
            self.retries, self.failover_wait = retries, FAILOVER_WAIT
            self.close()
        where = self.answering_server()
        return True, f"Connected to {where}: the server holds {page.get('total', 0)} batch(es)"
