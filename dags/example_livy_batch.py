"""Estimate pi with Spark through Livy: the bundled PySpark example run by LivyBatchOperator.

Needs a `livy_default` connection (type livy_batch, or the official `livy`) to a Livy server;
`bash scripts/demo.sh` starts our server with local Spark and runs this DAG with `airflow dags test`.
The example job is always whitelisted by our server, wherever the package is installed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Param

from airflow_provider_livy.example_jobs import PI_JOB
from airflow_provider_livy.operators.livy import LivyBatchOperator

with DAG(
    dag_id="example_livy_batch",
    description="Run the bundled pi.py through Livy; the batch is deleted whatever happens",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"partitions": Param(2, type="integer", minimum=1), "fail": Param(False, type="boolean")},
    tags=["livy", "example"],
    render_template_as_native_obj=True,  # so `args` below renders to a list
):
    LivyBatchOperator(
        task_id="estimate_pi",
        file=str(PI_JOB),
        args="{{ [params.partitions | string] + (['--fail'] if params.fail else []) }}",
        conf={"spark.ui.showConsoleProgress": False},
        driver_memory="512m",
        polling_interval=5,
    )
