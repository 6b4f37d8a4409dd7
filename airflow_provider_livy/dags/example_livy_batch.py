"""Estimate pi with Spark through Livy: the bundled PySpark example run by LivyBatchOperator.

Needs a Livy connection (type livy_batch, or the official `livy`) to a Livy server;
`bash scripts/demo.sh` starts our server with local Spark and runs this DAG with `airflow dags test`.
The example job is always whitelisted by our server, wherever the package is installed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Param

from airflow_provider_livy.example_jobs import PI_JOB
from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID
from airflow_provider_livy.operators.livy import LivyBatchOperator

DAG_ID = "example_livy_batch"


def example_livy_batch_dag(
    *, dag_id: str = DAG_ID, livy_conn_id: str = DEFAULT_CONN_ID, partitions: int = 2, fail: bool = False, **dag_args: Any
) -> DAG:
    """The example DAG; `partitions` and `fail` are its params' defaults, `dag_args` go to `DAG`."""
    settings: dict[str, Any] = {
        "description": "Run the bundled pi.py through Livy; the batch is deleted whatever happens",
        "schedule": None,
        "start_date": datetime(2026, 1, 1),
        "catchup": False,
        "tags": ["livy", "example"],
        "doc_md": __doc__,
        **dag_args,
    }
    params = {"partitions": Param(partitions, type="integer", minimum=1), "fail": Param(fail, type="boolean")}
    # render_template_as_native_obj, so `args` below renders to a list
    with DAG(dag_id=dag_id, params=params, render_template_as_native_obj=True, **settings) as dag:
        LivyBatchOperator(
            task_id="estimate_pi",
            livy_conn_id=livy_conn_id,
            file=str(PI_JOB),
            args="{{ [params.partitions | string] + (['--fail'] if params.fail else []) }}",
            conf={"spark.ui.showConsoleProgress": False},
            driver_memory="512m",
            polling_interval=5,
        )
    return dag
