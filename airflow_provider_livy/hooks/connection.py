"""What the sync and async hooks share: reading an Airflow connection, the retry policy, errors, paths.

Both hooks speak the protocol defined in `airflow_provider_livy.protocol`; this module only adds
the client-side decisions (where the server is, how to authenticate, when a call may be repeated).
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.sdk.exceptions import AirflowException

from airflow_provider_livy.protocol import BATCHES_PATH, CSRF_HEADER, DEFAULT_PORT, SESSIONS_PATH, STATE_WAIT_PARAM

DEFAULT_CONN_ID = "livy_default"
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 5
# Statuses a gateway or a busy server answers without having done anything we must not repeat.
RETRY_STATUSES = frozenset({502, 503, 504})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 120.0
AUTH_KINDS = ("basic", "none", "class", "kerberos")
KNOWN_EXTRAS = frozenset(
    {"verify", "ca_bundle", "auth_kind", "auth_class", "auth_kwargs", "headers", "endpoint_prefix", "timeout"}
    | {"keytab", "principal", "service_principal"}
    | {"zookeeper_hosts", "zookeeper_prefix", "zookeeper_auth", "session_conf"}
)
USER_AGENT = "airflow-provider-livy"


class LivyError(RuntimeError, AirflowException):
    """A Livy call that failed; `msg` is the server's {"msg": ...} text when it sent one. An AirflowException
    (what the official hooks raise), so DAG code that catches that catches ours too."""

    def __init__(self, message: str, status: int | None = None, msg: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.msg = msg


class LivyConfigError(LivyError):
    """The connection is unusable as configured (missing host, bad extra); retrying cannot help."""


@dataclass(frozen=True)
class LivySettings:
    """Everything a hook needs from an Airflow connection, as plain data."""

    base_urls: tuple[str, ...]  # one per server the connection lists; a group's leader moves among them
    verify: bool | str = True
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    auth_kind: str = "basic"
    login: str | None = None
    password: str | None = None
    auth_class: str | None = None
    auth_kwargs: Mapping[str, Any] = field(default_factory=dict)
    keytab: str | None = None  # auth_kind kerberos: a client keytab instead of the worker's ticket cache
    principal: str | None = None  # whose key in the keytab (or which ticket of the cache)
    service_principal: str | None = None  # the server's, when not HTTP/<the URL's host>
    zookeeper_hosts: str | None = None
    zookeeper_prefix: str = "livy"
    zookeeper_auth: str | None = field(default=None, repr=False)  # the server's zk-state-store.auth; may hold a password

    @property
    def base_url(self) -> str:
        """The first server's URL (the only one, for a connection that lists one)."""
        return self.base_urls[0]

    def url(self, path: str) -> str:
        return self.base_url + path


def _extra(extras: Mapping[str, Any], conn_type: str | None, key: str) -> Any:
    """A connection extra by its plain name, or by the `extra__<type>__<name>` form older UIs wrote."""
    if key in extras:
        return extras[key]
    return extras.get(f"extra__{conn_type}__{key}")


def _json_object(name: str, value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise LivyConfigError(f"connection extra '{name}' is not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise LivyConfigError(f"connection extra '{name}' must be a JSON object, got {type(value).__name__}")
    return value


def _as_bool(name: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise LivyConfigError(f"connection extra '{name}' must be true or false, got {value!r}")


def base_url(host: str | None, port: int | None, scheme: str | None, prefix: str | None) -> str:
    """http(s)://host:port[/path][/prefix]. A URL in `host` keeps its scheme and path, as with the official provider.

    A bare host without a port gets Livy's default port 8998; a URL without one keeps its scheme's port.
    """
    if not host or not host.strip():
        raise LivyConfigError("the Livy connection has no host")
    text = host.strip()
    if "://" not in text:
        scheme = (scheme or "http").lower()
        text = f"{scheme if scheme in ('http', 'https') else 'http'}://{text}"
        port = port or DEFAULT_PORT
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LivyConfigError(f"the Livy connection host {host!r} is not an http(s) address")
    netloc = parts.netloc if parts.port or not port else f"{parts.netloc}:{port}"
    path = "/".join(p for p in f"{parts.path}/{prefix or ''}".split("/") if p)
    return f"{parts.scheme}://{netloc}" + (f"/{path}" if path else "")


def base_urls(host: str | None, port: int | None, scheme: str | None, prefix: str | None) -> tuple[str, ...]:
    """One `base_url` per comma-separated server of `host` (`a,b:8999,c`), each with the connection's port
    when it names none: the servers of one group, any of which may lead."""
    servers = [part for part in (host or "").split(",") if part.strip()]
    return tuple(dict.fromkeys(base_url(server, port, scheme, prefix) for server in servers or [""]))


def settings_from_connection(conn: Any) -> LivySettings:
    """Read a `livy_batch` connection, or any connection with a host (the official `livy` type too)."""
    extras: Mapping[str, Any] = conn.extra_dejson or {}
    conn_type = getattr(conn, "conn_type", None)

    def get(key: str) -> Any:
        return _extra(extras, conn_type, key)

    urls = base_urls(conn.host, conn.port, conn.schema, get("endpoint_prefix"))
    verify: bool | str = _as_bool("verify", get("verify"), True)
    if verify and get("ca_bundle"):
        verify = str(get("ca_bundle"))
    headers = {str(k): str(v) for k, v in _json_object("headers", get("headers")).items()}
    # The official provider's connections carry headers as plain top-level extras; keep sending them.
    if conn_type == "livy":
        plain = {k: v for k, v in extras.items() if isinstance(v, str) and k not in KNOWN_EXTRAS and not k.startswith("extra__")}
        headers = plain | headers
    kind = (get("auth_kind") or "basic").strip().lower()
    if kind not in AUTH_KINDS:
        raise LivyConfigError(f"connection extra 'auth_kind' must be one of {', '.join(AUTH_KINDS)}, got {kind!r}")
    if kind == "class" and not get("auth_class"):
        raise LivyConfigError("auth_kind is 'class' but the connection has no 'auth_class'")
    if get("keytab") and kind != "kerberos":
        raise LivyConfigError(f"the connection names a keytab but auth_kind is {kind!r}; set auth_kind to kerberos")
    timeout = get("timeout")
    try:
        timeout = float(timeout) if timeout not in (None, "") else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        raise LivyConfigError(f"connection extra 'timeout' must be a number of seconds, got {timeout!r}") from None
    return LivySettings(
        base_urls=urls,
        verify=verify,
        headers=headers,
        timeout=timeout,
        auth_kind=kind,
        login=conn.login or None,
        password=conn.password or None,
        auth_class=get("auth_class") or None,
        auth_kwargs=_json_object("auth_kwargs", get("auth_kwargs")),
        keytab=get("keytab") or None,
        principal=get("principal") or None,
        service_principal=get("service_principal") or None,
        zookeeper_hosts=get("zookeeper_hosts") or None,
        zookeeper_prefix=get("zookeeper_prefix") or "livy",
        zookeeper_auth=get("zookeeper_auth") or None,
    )


def default_headers(settings: LivySettings) -> dict[str, str]:
    """Sent on every call. X-Requested-By satisfies Livy's CSRF check on POST and DELETE."""
    return {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
        CSRF_HEADER: settings.login or "airflow",
        **settings.headers,
    }


def retry_delay(attempt: int, retry_after: str | None = None, now: float | None = None) -> float:
    """Seconds before retry number `attempt` (0-based): the server's Retry-After if it sent one, else backoff."""
    if retry_after:
        text = retry_after.strip()
        if text.isdigit():
            return min(float(text), RETRY_AFTER_CAP)
        parsed = email.utils.parsedate_tz(text)
        if parsed is not None:
            wait = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
            return min(max(wait, 0.0), RETRY_AFTER_CAP)
    return min(BACKOFF_BASE * 2**attempt, BACKOFF_CAP)


def family_path(family: str, key: int | str, action: str = "") -> str:
    """/batches or /sessions, then /<id or name>[/state|/log|/statements...]. A name is quoted: Livy
    looks up non-numeric keys by name."""
    suffix = f"/{action}" if action else ""
    return f"{family}/{quote(str(key), safe='')}{suffix}"


def retryable(method: str, status: int, retry_after: str | None) -> bool:
    """Whether an answer may be retried: a gateway's or a busy server's refusal, and for a POST (which
    may have created something) only our server's 503 with Retry-After, sent when it refused before creating."""
    return status in RETRY_STATUSES and (method != "POST" or (status == 503 and retry_after is not None))


def next_retry(
    method: str,
    attempt: int,
    retries: int,
    *,
    status: int | None = None,
    retry_after: str | None = None,
    never_sent: bool = False,
) -> float | None:
    """The one retry rule of both hooks: seconds to wait before repeating failed try `attempt` (0-based),
    or None to give up.

    `status` is the answer's status, None when no answer came (a connection error or a timeout);
    `never_sent`: the connection was never established, so not even a POST can have done anything.
    """
    if attempt >= retries:
        return None
    if status is None:
        return None if method == "POST" and not never_sent else retry_delay(attempt)
    return retry_delay(attempt, retry_after) if retryable(method, status, retry_after) else None


# Answers of a server that is not the group's leader and did nothing: try the connection's next server.
MOVE_ON_STATUSES = frozenset({307, 503})
_current: dict[tuple[str, ...], str] = {}  # per connection's servers: the one calls go to in this process


def current_server(servers: tuple[str, ...], hint: str | None = None) -> str:
    """Where the next call goes: the server that last answered as the leader in this process, or the one after a
    server that did not; before this process has asked any, `hint` (where an earlier run of the task found the
    leader: each poke of a sensor in reschedule mode, each trigger, runs in a process of its own) when the
    connection lists it; else the first."""
    chosen = _current.get(servers)
    if chosen in servers:
        return chosen
    return hint if hint in servers else servers[0]


def next_server(servers: tuple[str, ...], base: str, status: int | None) -> str:
    """The one server choice of both hooks, beside `next_retry`: after `base` answered `status` (None: no answer),
    where calls go next, remembered. An answer that is not a 503 or a 307 is the leader's (a standby proxies to
    it), so calls stay there; no answer, a 503 or a 307 moves on to the connection's next server."""
    if status is not None and status not in MOVE_ON_STATUSES:
        chosen = base
    else:
        chosen = servers[(servers.index(base) + 1) % len(servers)] if base in servers else current_server(servers)
    _current[servers] = chosen
    return chosen


# How long one call waits out a group of servers with no leader (a standby's 503, a dead leader's refused
# connection), whatever the hook's `retries`: a failover takes the group's session timeout + 2 s (12 s by default).
FAILOVER_WAIT = 60.0


@dataclass
class Tries:
    """One call's failed tries so far: all of them (they say which server of a round is next), those the hook's
    `retries` bound, and since when the group has had no leader (that wait is bounded by time instead)."""

    failed: int = 0
    counted: int = 0
    leaderless_since: float | None = None
    waiting: bool = False  # the last failure was the group's having no leader

    def note(self, retries: int, failover_wait: float) -> str:
        """How the retry about to be made reads in the task log."""
        if self.waiting and self.leaderless_since is not None:
            waited = time.monotonic() - self.leaderless_since
            return f"retry {self.failed} ({waited:.0f}s of up to {failover_wait:g}s waiting for the group to have a leader)"
        return f"retry {self.counted} of {retries}"


def next_try(
    method: str,
    tries: Tries,
    retries: int,
    servers: tuple[str, ...],
    *,
    status: int | None = None,
    retry_after: str | None = None,
    never_sent: bool = False,
    failover_wait: float = FAILOVER_WAIT,
) -> float | None:
    """`next_retry` for a connection listing `servers`, counting the failed try in `tries`. With several: a 307
    (nothing done there) is repeated at once; an answer that says the group has no leader now (a 503, a connection
    never established) moves on at once while the round has servers left, then waits its Retry-After, for up to
    `failover_wait` seconds of no leader, however many tries that takes; any other failure is bounded by
    `retries`, as with one server."""
    tries.failed, tries.waiting = tries.failed + 1, False
    if len(servers) > 1:
        if status == 307 and tries.counted < retries:
            tries.counted += 1
            return 0.0
        if status == 503 or (status is None and never_sent):
            now = time.monotonic()
            if tries.leaderless_since is None:
                tries.leaderless_since = now
            if now - tries.leaderless_since < failover_wait:
                tries.waiting = True
                round_left = status is None and tries.failed % len(servers)
                return 0.0 if round_left else retry_delay(0, retry_after)
    delay = next_retry(method, tries.counted, retries, status=status, retry_after=retry_after, never_sent=never_sent)
    tries.counted += 1
    return delay


def reattach_by_name(method: str, body: Any, err: LivyError) -> str | None:
    """The name to look a create up by before it is sent again: a POST with a name that failed without an answer
    saying it was refused (a timeout, a dropped connection, a gateway's 502/504) may have created it."""
    if method != "POST" or not isinstance(body, Mapping) or not body.get("name"):
        return None
    return str(body["name"]) if err.status is None or err.status in RETRY_STATUSES - {503} else None


def batch_path(key: int | str, action: str = "") -> str:
    return family_path(BATCHES_PATH, key, action)


def session_path(key: int | str, action: str = "") -> str:
    return family_path(SESSIONS_PATH, key, action)


def statement_path(session_id: int | str, statement_id: int | None = None, action: str = "") -> str:
    """/sessions/<id>/statements[/<sid>[/cancel]]."""
    tail = "statements" + ("" if statement_id is None else f"/{int(statement_id)}") + (f"/{action}" if action else "")
    return session_path(session_id, tail)


def wait_params(wait: float | None) -> dict[str, str]:
    """The long-poll query (our server holds the answer until a change or `wait` s; Livy ignores it)."""
    return {} if wait is None else {STATE_WAIT_PARAM: f"{wait:g}"}


def log_step(page: Mapping[str, Any], offset: int) -> tuple[list[str], int, bool]:
    """One GET .../log?from=offset page: its lines, the next offset, and whether we have caught up."""
    lines = list(page.get("log") or [])
    offset = int(page.get("from", offset)) + len(lines)
    return lines, offset, not lines or offset >= int(page.get("total", 0))


def error_message(status: int, body: Any, text: str) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("msg"), str):
        return body["msg"]
    return text.strip()[:500] or None if status >= 400 else None


def describe(method: str, url: str, status: int, msg: str | None) -> str:
    return f"Livy {method} {url} answered {status}: {msg or '(no message)'}"
