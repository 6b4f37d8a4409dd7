"""Livy maintenance: sweep expired sessions through the REST API and stale recovery state out of ZooKeeper.

Hourly by default, one run at a time. `rest_sweep` deletes finished sessions older than
`min_age_seconds`, and with `max_idle_seconds` set, interactive sessions idle for longer than that
(a busy one is never touched); `zookeeper_sweep` removes recovery records no server will use
again; `check` fails the run when either found errors, the server still holds more than
`max_sessions_alert` sessions, or interactive sessions have been idle for over a day. With
`dry_run` nothing is deleted and the task logs and XComs say what would be. The logic lives in
`airflow_provider_livy.maintenance`; this module only wires it up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID
from airflow_provider_livy.maintenance import tasks

DAG_ID = "livy_maintenance"


def livy_maintenance_dag(
    *,
    dag_id: str = DAG_ID,
    schedule: Any = "@hourly",
    livy_conn_id: str = DEFAULT_CONN_ID,
    min_age_seconds: float = tasks.DEFAULT_MIN_AGE,
    dry_run: bool = False,
    zookeeper_hosts: str | None = None,
    zookeeper_prefix: str | None = None,
    max_sessions_alert: int = tasks.DEFAULT_MAX_SESSIONS_ALERT,
    untouched_seconds: float = tasks.DEFAULT_UNTOUCHED,
    max_idle_seconds: float | None = None,
    **dag_args: Any,
) -> DAG:
    """The maintenance DAG. The keyword arguments are the defaults of its params (a manual run can
    still override each); `dag_args` go to `DAG` (e.g. `default_args`, `tags`, `start_date`), so one
    dags folder can hold a DAG per Livy server with distinct `dag_id`s."""
    settings: dict[str, Any] = {
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "max_active_runs": 1,
        "tags": ["livy", "maintenance"],
        "doc_md": __doc__,
        **dag_args,
    }
    params = {
        "livy_conn_id": Param(livy_conn_id, type="string", description="The Livy connection to sweep."),
        "min_age_seconds": Param(min_age_seconds, type="number", minimum=0, description="How long a finished session is kept."),
        "dry_run": Param(dry_run, type="boolean", description="Delete nothing; report what would be deleted."),
        "zookeeper_hosts": Param(
            zookeeper_hosts,
            type=["null", "string"],
            description="ZooKeeper connect string; empty: the connection's zookeeper_hosts field; none: no ZooKeeper sweep.",
        ),
        "zookeeper_prefix": Param(
            zookeeper_prefix, type=["null", "string"], description="Key prefix; empty: the connection's field, else 'livy'."
        ),
        "max_sessions_alert": Param(
            max_sessions_alert,
            type="integer",
            minimum=0,
            description="Fail the run when the server still holds more sessions than this after the sweep.",
        ),
        "untouched_seconds": Param(
            untouched_seconds,
            type="number",
            minimum=0,
            description="With the server unreachable, delete ZooKeeper records not written for this long.",
        ),
        "max_idle_seconds": Param(
            max_idle_seconds,
            type=["null", "number"],
            minimum=0,
            description="End interactive sessions idle for longer than this (busy ones never); empty: off.",
        ),
    }
    with DAG(dag_id=dag_id, schedule=schedule, params=params, **settings) as dag:
        # One XCom per task (the report), not one per key of it.
        rest = task(task_id=tasks.REST_TASK, multiple_outputs=False)(tasks.rest_sweep)()
        zookeeper = task(task_id=tasks.ZOOKEEPER_TASK, trigger_rule="all_done", multiple_outputs=False)(tasks.zookeeper_sweep)()
        verdict = task(task_id="check", trigger_rule="all_done", multiple_outputs=False)(tasks.check)()
        rest >> zookeeper >> verdict
    return dag
