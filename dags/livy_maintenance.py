"""Livy maintenance: sweep expired sessions through the REST API and stale recovery state out of ZooKeeper.

Hourly, one run at a time. `rest_sweep` deletes finished sessions older than `min_age_seconds`;
`zookeeper_sweep` removes recovery records no server will use again; `check` fails the run when
either found errors or the server still holds more than `max_sessions_alert` sessions. With
`dry_run` nothing is deleted and the task logs and XComs say what would be. The logic lives in
`airflow_provider_livy.maintenance`; this file only wires it up.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param, task

from airflow_provider_livy.maintenance import tasks

with DAG(
    dag_id="livy_maintenance",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["livy", "maintenance"],
    doc_md=__doc__,
    params={
        "livy_conn_id": Param("livy_default", type="string", description="The Livy connection to sweep."),
        "min_age_seconds": Param(
            tasks.DEFAULT_MIN_AGE, type="number", minimum=0, description="How long a finished session is kept."
        ),
        "dry_run": Param(False, type="boolean", description="Delete nothing; report what would be deleted."),
        "zookeeper_hosts": Param(
            None,
            type=["null", "string"],
            description="ZooKeeper connect string; empty: the connection's zookeeper_hosts field; none: no ZooKeeper sweep.",
        ),
        "zookeeper_prefix": Param(
            None, type=["null", "string"], description="Key prefix; empty: the connection's field, else 'livy'."
        ),
        "max_sessions_alert": Param(
            tasks.DEFAULT_MAX_SESSIONS_ALERT,
            type="integer",
            minimum=0,
            description="Fail the run when the server still holds more sessions than this after the sweep.",
        ),
        "untouched_seconds": Param(
            tasks.DEFAULT_UNTOUCHED,
            type="number",
            minimum=0,
            description="With the server unreachable, delete ZooKeeper records not written for this long.",
        ),
    },
) as dag:
    # One XCom per task (the report), not one per key of it.
    rest = task(task_id=tasks.REST_TASK, multiple_outputs=False)(tasks.rest_sweep)()
    zookeeper = task(task_id=tasks.ZOOKEEPER_TASK, trigger_rule="all_done", multiple_outputs=False)(tasks.zookeeper_sweep)()
    verdict = task(task_id="check", trigger_rule="all_done", multiple_outputs=False)(tasks.check)()
    rest >> zookeeper >> verdict
