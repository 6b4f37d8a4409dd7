"""Real Spark through Airflow (success and failure of the bundled pi.py), and the official provider's
LivyHook and LivyOperator working unmodified against our server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from airflow.providers.apache.livy.hooks.livy import BatchState
from airflow.providers.apache.livy.hooks.livy import LivyHook as OfficialLivyHook

from airflow_provider_livy.example_jobs import PI_JOB
from tests.airflow.conftest import DagRunner, connection_env
from tests.conftest import LivyServer


@pytest.mark.spark
def test_real_spark_success_and_failure(make_server: Callable[..., LivyServer], dag_runner: DagRunner) -> None:
    server = make_server({"livy.spark.master": "local[2]"}, fake_spark=False)
    dag = dag_runner.write_dag(
        "livy_real_spark",
        """
        LivyBatchOperator(task_id="pi", file={job!r}, args=["2"], polling_interval=2, dag=dag)
        LivyBatchOperator(task_id="pi_fails", file={job!r}, args=["2", "--fail"], polling_interval=2, dag=dag)
        """,
        job=str(PI_JOB),
    )
    outcome = dag_runner.run(dag, "livy_real_spark", connection_env(server))
    assert outcome.task("pi")["state"] == "success", outcome.output[-4000:]
    assert outcome.task("pi_fails")["state"] == "failed"
    out = outcome.output
    assert "Pi is roughly 3.1" in out  # the driver's output, streamed into the task log
    assert "ended dead. Last driver log lines:" in out and "failing on purpose (--fail)" in out
    assert server.batch_ids() == []


def test_official_hook_and_operator_work_against_our_server(
    fake_server: LivyServer, dag_runner: DagRunner, job_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = connection_env(fake_server, "livy_official", conn_type="livy")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    hook = OfficialLivyHook(livy_conn_id="livy_official")
    batch_id = hook.post_batch(file=job_file, args=["lines=3"], name="official-hook")
    fake_server.wait_for(batch_id)
    assert hook.get_batch_state(batch_id) == BatchState.SUCCESS
    assert hook.get_batch(batch_id)["name"] == "official-hook"
    assert "driver line 2" in "\n".join(hook.get_batch_logs(batch_id, 0, 100)["log"])
    hook.delete_batch(batch_id)
    assert fake_server.batch_ids() == []

    dag = dag_runner.write_dag(
        "livy_official",
        """
        from airflow.providers.apache.livy.operators.livy import LivyOperator
        LivyOperator(task_id="official", file={job!r}, args=["sleep=1"], livy_conn_id="livy_official",
                     polling_interval=1, dag=dag)
        """,
        job=job_file,
    )
    outcome = dag_runner.run(dag, "livy_official", env)
    assert outcome.task("official")["state"] == "success", outcome.output[-4000:]
    # The official operator never deletes a finished batch: this is how sessions pile up.
    left = fake_server.get("/batches").json()["sessions"]
    assert [(b["id"], b["state"]) for b in left] == [(outcome.task("official")["xcom"]["return_value"], "success")]
