"""The maintenance DAG's three tasks as plain functions of the run's params (airflow_provider_livy.dags wires them).

The two sweeps never fail on what they find (an unreachable server, a failed delete): they
report it and let the other sweep run. The `check` task then fails the run with every problem
spelled out, including a server that still holds more sessions than `max_sessions_alert`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk.log import mask_secret
from kazoo.exceptions import AuthFailedError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry

from airflow_provider_livy import zookeeper_auth
from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyError
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.maintenance import terminal_since
from airflow_provider_livy.maintenance.report import SweepReport, verdict
from airflow_provider_livy.maintenance.rest_sweep import Listing, sweep_rest
from airflow_provider_livy.maintenance.zookeeper_sweep import Rules, sweep_zookeeper
from airflow_provider_livy.protocol import BATCHES, SESSIONS

log = logging.getLogger(__name__)

DEFAULT_MIN_AGE = 3600
DEFAULT_MAX_SESSIONS_ALERT = 5000
DEFAULT_UNTOUCHED = 7 * 24 * 3600  # a week: far beyond any sane retention, short of Livy's 24-day disaster
HTTP_RETRIES = 2  # an unreachable server is reported after ~1.5 s, not the hook's default ~15 s
LIST_PAGE = 1000
ZK_CONNECT_TIMEOUT = 10.0
REST_TASK = "rest_sweep"
ZOOKEEPER_TASK = "zookeeper_sweep"


class MaintenanceError(RuntimeError):
    """The run found problems an operator must look at; the message lists them."""


@dataclass(frozen=True)
class SweepSettings:
    conn_id: str
    min_age: float
    dry_run: bool
    zookeeper_hosts: str | None
    zookeeper_prefix: str | None
    max_sessions_alert: int
    untouched: float
    max_idle: float | None  # None: idle interactive sessions are left to the server's own timeout


def _number(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"param {name} must be a number of seconds or a count, got {value!r}") from None
    if number < 0:
        raise ValueError(f"param {name} must not be negative, got {value!r}")
    return number


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0", ""):
        raise ValueError(f"param {name} must be true or false, got {value!r}")
    return text in ("true", "1")


def settings_from(params: Mapping[str, Any] | None) -> SweepSettings:
    """The run's params, checked, with a readable error for a bad one."""
    params = params or {}
    return SweepSettings(
        conn_id=str(params.get("livy_conn_id") or DEFAULT_CONN_ID),
        min_age=_number(params, "min_age_seconds", DEFAULT_MIN_AGE),
        dry_run=_flag(params, "dry_run"),
        zookeeper_hosts=(str(params.get("zookeeper_hosts") or "").strip() or None),
        zookeeper_prefix=(str(params.get("zookeeper_prefix") or "").strip() or None),
        max_sessions_alert=int(_number(params, "max_sessions_alert", DEFAULT_MAX_SESSIONS_ALERT)),
        untouched=_number(params, "untouched_seconds", DEFAULT_UNTOUCHED),
        max_idle=_optional_number(params, "max_idle_seconds"),
    )


def _optional_number(params: Mapping[str, Any], name: str) -> float | None:
    value = params.get(name)
    return None if value is None or value == "" else _number(params, name, 0.0)


def hook_kinds(hook: LivyHook) -> list[Listing]:
    """Batches, and interactive sessions where the server has them (GET /sessions)."""
    return [
        Listing(BATCHES, functools.partial(hook.list_batches, page_size=LIST_PAGE), hook.discard_batch),
        Listing(
            SESSIONS,
            functools.partial(hook.list_sessions, page_size=LIST_PAGE),
            hook.delete_session,
            state=hook.get_session_state,
        ),
    ]


def _publish(report: SweepReport) -> dict[str, Any]:
    log.info("%s", report.summary())
    for note in report.notes:
        log.info("%s sweep: %s", report.sweep, note)
    for message in report.errors[:20]:
        log.error("%s sweep: %s", report.sweep, message)
    if report.dry_run and report.deleted:
        log.info("%s sweep (dry run) would delete: %s", report.sweep, ", ".join(report.as_dict()["deleted_sample"]))
    return report.as_dict()


# --- the REST sweep -------------------------------------------------------------------------------
def _load_record(conn_id: str) -> tuple[str | None, terminal_since.Record]:
    from airflow.sdk import Variable

    text = Variable.get(terminal_since.variable_key(conn_id), default=None)
    return text, terminal_since.parse(text)


def _save_record(conn_id: str, before: str | None, record: terminal_since.Record) -> None:
    from airflow.sdk import Variable

    text = terminal_since.dump(record)
    if text != (before or terminal_since.dump({})):
        Variable.set(
            terminal_since.variable_key(conn_id),
            text,
            description="livy_maintenance: since when each finished session without timestamps was seen finished",
        )


def rest_sweep(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Delete finished sessions older than min_age_seconds, and interactive sessions idle longer than
    max_idle_seconds (when set), through the server's API."""
    settings = settings_from(params)
    hook = LivyHook(settings.conn_id, retries=HTTP_RETRIES)
    before, previous = _load_record(settings.conn_id)
    try:
        outcome = sweep_rest(hook_kinds(hook), settings.min_age, settings.dry_run, previous, max_idle=settings.max_idle)
    finally:
        hook.close()
    _save_record(settings.conn_id, before, outcome.record)
    extra = outcome.report.extra
    log.info(
        "interactive sessions by kind: %s; idle ones ended: %d; idle over a day: %d",
        extra["sessions_by_kind"] or "none",
        extra["idle_ended"],
        extra["idle_over_day"],
    )
    return _publish(outcome.report)


# --- the ZooKeeper sweep ----------------------------------------------------------------------------
def listed_ids(kind: Listing) -> set[int]:
    """The ids the server holds. Livy pages by offset, so a delete between pages can hide one id from
    a listing; the union of two listings would have to miss it twice."""
    first = {view["id"] for view in kind.list() if isinstance(view.get("id"), int)}
    return first | {view["id"] for view in kind.list() if isinstance(view.get("id"), int)}


def server_ids(hook: LivyHook) -> dict[str, set[int] | None]:
    """REST kind -> ids the server holds; None for a kind it could not be asked about."""
    held: dict[str, set[int] | None] = {}
    for kind in hook_kinds(hook):
        if held and all(ids is None for ids in held.values()):
            held[kind.name] = None  # the server is not answering at all: do not wait for it twice
            continue
        try:
            held[kind.name] = listed_ids(kind)
        except LivyError as err:
            if kind.optional and err.status == 404:
                held[kind.name] = set()  # no interactive sessions API: the server holds none
            else:
                log.warning("cannot ask the server which %s it holds: %s", kind.family.plural, err)
                held[kind.name] = None
    return held


def zookeeper_target(settings: SweepSettings, hook: LivyHook) -> tuple[str | None, str]:
    """Hosts and prefix: the params when given, else the connection's fields."""
    hosts, prefix = settings.zookeeper_hosts, settings.zookeeper_prefix
    if hosts is None or prefix is None:
        conn = hook.settings
        hosts = hosts or conn.zookeeper_hosts
        prefix = prefix or conn.zookeeper_prefix
    return hosts, prefix or "livy"


def zookeeper_sweep(params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Remove recovery records no server will use again from /<prefix>/v1/{batch,interactive}."""
    settings = settings_from(params)
    hook = LivyHook(settings.conn_id, retries=HTTP_RETRIES)
    report = SweepReport("zookeeper", dry_run=settings.dry_run)
    try:
        hosts, prefix = zookeeper_target(settings, hook)
        if not hosts:
            report.skipped = "no ZooKeeper hosts (neither the zookeeper_hosts param nor the connection's field is set)"
            return _publish(report)
        auth = zookeeper_auth.parse_auth(hook.settings.zookeeper_auth, "connection extra 'zookeeper_auth'")
        if auth is not None and auth.password:
            mask_secret(auth.password)
        retry = KazooRetry(max_tries=3)
        client = zookeeper_auth.new_client(hosts, auth, timeout=15.0, connection_retry=retry, command_retry=retry.copy())
        try:
            client.start(timeout=ZK_CONNECT_TIMEOUT)
        except KazooTimeoutError:
            client.close()
            report.error(f"ZooKeeper at {hosts} is unreachable (no connection within {ZK_CONNECT_TIMEOUT:g}s)")
            return _publish(report)
        try:
            log.info("sweeping ZooKeeper %s under /%s", hosts, prefix.strip("/"))
            rules = Rules(min_age=settings.min_age, untouched=settings.untouched)
            try:
                report = sweep_zookeeper(
                    client, prefix, lambda: server_ids(hook), rules, leader_epoch=hook.leader_epoch, dry_run=settings.dry_run
                )
            except AuthFailedError:  # a SASL login is answered once connected: a wrong one fails the first request
                report.error(f"ZooKeeper at {hosts} refused the login as {auth.describe() if auth else '?'}; nothing was deleted")
        finally:
            client.stop()
            client.close()
    finally:
        hook.close()
    return _publish(report)


# --- the verdict ----------------------------------------------------------------------------------
def check(params: Mapping[str, Any] | None = None, ti: Any = None) -> dict[str, Any]:
    """Fail the run when a sweep failed or found errors, or the server holds too many sessions."""
    settings = settings_from(params)
    reports = {task_id: ti.xcom_pull(task_ids=task_id) for task_id in (REST_TASK, ZOOKEEPER_TASK)}
    problems = [f"task {task_id} failed before reporting (see its log)" for task_id, r in reports.items() if r is None]
    found = [r for r in reports.values() if r is not None]
    rest = reports[REST_TASK] or {}
    live = rest.get("held_after")
    problems += verdict(found, live, settings.max_sessions_alert, rest.get("idle_over_day") or 0)
    summary = {
        "live_sessions": live,
        "sessions_by_kind": rest.get("sessions_by_kind"),
        "max_sessions_alert": settings.max_sessions_alert,
        "problems": problems,
    }
    if problems:
        raise MaintenanceError("Livy maintenance found problems:\n- " + "\n- ".join(problems))
    log.info("Livy maintenance: all clear; the server holds %s sessions (alert above %d)", live, settings.max_sessions_alert)
    return summary
