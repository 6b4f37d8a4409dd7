"""LivyBatchOperator, LivyBatchSensor and LivyBatchTrigger in real Airflow (dag.test in a subprocess)
against the real server with the quick fake spark-submit. After every case the server's batch list
is checked: nothing is left behind unless the DAG asked for it."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.maintenance.rest_sweep import KEPT_ACTIVE, sweep_rest
from airflow_provider_livy.maintenance.tasks import hook_kinds
from airflow_provider_livy.operators.livy import LivyBatchOperator, build_request
from airflow_provider_livy.operators.livy_task import batch_name
from airflow_provider_livy.protocol import OPERATOR_ARGUMENTS, BatchRequestError
from tests.airflow.conftest import DagRunner, connection_env, wait_until
from tests.conftest import LivyServer


def created(server: LivyServer) -> int:
    """How many batches the server has ever accepted (its Prometheus counter)."""
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("livy_batches_created_total"):
            return int(float(line.split()[1]))
    raise AssertionError("no livy_batches_created_total in /metrics")


def test_arguments_are_livys_fields_and_templated() -> None:
    import inspect

    params = inspect.signature(LivyBatchOperator.__init__).parameters
    assert set(OPERATOR_ARGUMENTS) <= set(params)
    assert len(LivyBatchOperator.template_fields) == len(OPERATOR_ARGUMENTS) + 1
    body = build_request({"file": "/j.py", "args": [1, "x"], "conf": {"a": 2, "b": True}, "driver_cores": "2", "queue": "q"})
    assert body == {"file": "/j.py", "args": ["1", "x"], "conf": {"a": "2", "b": "true"}, "driverCores": 2, "queue": "q"}
    with pytest.raises(BatchRequestError, match="conf"):
        build_request({"file": "/j.py", "conf": {"a": {"nested": 1}}})


def test_queue_is_livys_and_executor_queue_is_airflows() -> None:
    from airflow.sdk import DAG

    with DAG("queues", schedule=None, start_date=datetime(2026, 1, 1), default_args={"queue": "from_defaults"}):
        both = LivyBatchOperator(task_id="both", file="/j.py", name="n")
        split = LivyBatchOperator(task_id="split", file="/j.py", name="n", queue="yarn", executor_queue="workers")
        executor_only = LivyBatchOperator(task_id="executor_only", file="/j.py", name="n", executor_queue="workers")
    assert (both.queue, both.batch_request({})["queue"]) == ("from_defaults", "from_defaults")
    assert (split.queue, split.batch_request({})["queue"]) == ("workers", "yarn")
    assert (executor_only.queue, executor_only.batch_request({})["queue"]) == ("workers", "from_defaults")


def test_batch_name_is_deterministic_valid_and_distinct() -> None:
    name = batch_name("dag/with slash", "t" * 300, "manual__2026-01-01T00:00:00+00:00", 3)
    assert name == batch_name("dag/with slash", "t" * 300, "manual__2026-01-01T00:00:00+00:00", 3)
    assert len(name) <= 255 and "/" not in name and not name.isdigit()
    assert name != batch_name("dag/with slash", "t" * 300, "manual__2026-01-01T00:00:00+00:00", 4)


def test_waiting_operator_outcomes(fake_server: LivyServer, dag_runner: DagRunner, job_file: str) -> None:
    """One DAG, five independent cases (a dag.test process costs seconds, so they share one)."""
    dag = dag_runner.write_dag(
        "livy_sync",
        """
        LivyBatchOperator(task_id="ok", file={job!r}, args=["lines=5", "sleep=1.5", "app=app-20260101000000-0001"],
                          conf={{"spark.executor.instances": 2}}, polling_interval=1, dag=dag)
        LivyBatchOperator(task_id="dies", file={job!r}, args=["lines=3", "exit=3"], polling_interval=1, dag=dag)
        LivyBatchOperator(task_id="kept", file={job!r}, args=["exit=2"], delete_on_failure=False, polling_interval=1, dag=dag)
        LivyBatchOperator(task_id="too_slow", file={job!r}, args=["sleep=60"], execution_timeout=timedelta(seconds=3),
                          polling_interval=1, dag=dag)
        LivyBatchOperator(task_id="invalid", file={job!r}, driver_memory="{{{{ 'lots' }}}}", dag=dag)
        """,
        job=job_file,
    )
    outcome = dag_runner.run(dag, "livy_sync", connection_env(fake_server))
    states = {t: outcome.task(t)["state"] for t in ("ok", "dies", "kept", "too_slow", "invalid")}
    assert states == {"ok": "success", "dies": "failed", "kept": "failed", "too_slow": "failed", "invalid": "failed"}
    out = outcome.output

    ok = outcome.task("ok")["xcom"]
    assert ok["batch_id"] == ok["return_value"]
    assert ok["app_id"] == "app-20260101000000-0001"
    # driver lines reach the task log while the job runs, before it ends and is deleted
    first = f"[livy batch {ok['batch_id']}]"
    assert out.index(f"{first} driver line 4") < out.index(f"Deleted Livy batch {ok['batch_id']} because it succeeded")

    assert "ended dead. Last driver log lines:" in out and "driver line 2" in out
    assert "invalid Livy batch request for task invalid: field 'driverMemory' must be a size" in out
    too_slow = outcome.task("too_slow")["xcom"]["batch_id"]
    assert f"Deleted Livy batch {too_slow} because the task stopped while the batch was running" in out
    kept = fake_server.get("/batches").json()["sessions"]
    assert [(b["name"], b["state"]) for b in kept] == [(batch_name("livy_sync", "kept", outcome.result["run_id"]), "dead")]
    assert created(fake_server) == 4  # the invalid request never reached the server


def test_deferrable_and_sensors(fake_server: LivyServer, dag_runner: DagRunner, job_file: str) -> None:
    dag = dag_runner.write_dag(
        "livy_deferred",
        """
        LivyBatchOperator(task_id="deferred", file={job!r}, args=["lines=4", "sleep=1"], deferrable=True,
                          polling_interval=1, dag=dag)
        LivyBatchOperator(task_id="deferred_too_slow", file={job!r}, args=["sleep=60"], deferrable=True,
                          execution_timeout=timedelta(seconds=3), polling_interval=1, dag=dag)
        ok = LivyBatchOperator(task_id="submit_ok", file={job!r}, args=["sleep=1"], wait_for_completion=False, dag=dag)
        bad = LivyBatchOperator(task_id="submit_bad", file={job!r}, args=["exit=1"], wait_for_completion=False, dag=dag)
        ok >> LivyBatchSensor(task_id="sense_ok", batch_id="{{{{ ti.xcom_pull('submit_ok') }}}}", delete_batch=True,
                              poke_interval=0.5, dag=dag)
        bad >> LivyBatchSensor(task_id="sense_bad", batch_id="{{{{ ti.xcom_pull('submit_bad') }}}}", delete_batch=True,
                               soft_fail=True, deferrable=True, poke_interval=0.5, dag=dag)
        """,
        job=job_file,
    )
    outcome = dag_runner.run(dag, "livy_deferred", connection_env(fake_server))
    states = {t: outcome.task(t)["state"] for t in ("deferred", "deferred_too_slow", "sense_ok", "sense_bad")}
    assert states == {"deferred": "success", "deferred_too_slow": "failed", "sense_ok": "success", "sense_bad": "skipped"}
    out = outcome.output
    assert "[livy batch" in out and "driver line 3" in out  # carried by the trigger's event into the task log
    assert "at the deadline; deleted it" in out
    assert outcome.task("deferred")["xcom"]["batch_id"] is not None
    assert fake_server.batch_ids() == []


def test_retry_after_worker_crash_reattaches_and_kill_deletes(
    fake_server: LivyServer, dag_runner: DagRunner, job_file: str
) -> None:
    """Try 1 submits and its worker dies (SIGKILL: no cleanup). The retry finds the batch by its
    deterministic name and re-attaches; then Airflow stops the retry (SIGTERM) and on_kill deletes it."""
    dag = dag_runner.write_dag(
        "livy_crash",
        'LivyBatchOperator(task_id="spark", file={job!r}, args=["sleep=300"], polling_interval=1, dag=dag)\n',
        job=job_file,
    )
    logical_date = datetime.now(UTC).isoformat()
    env = connection_env(fake_server)
    worker = dag_runner.start(dag, "livy_crash", env, logical_date)
    running = wait_until(lambda: fake_server.get("/batches").json()["sessions"], timeout=120, what="the batch to be submitted")
    worker.proc.kill()
    worker.proc.wait()
    assert fake_server.batch_ids() == [running[0]["id"]]

    retry = dag_runner.start(dag, "livy_crash", env, logical_date)  # same dag, task and run_id: a retry
    line = retry.wait_for_output("Re-attaching to batch")
    assert f"Re-attaching to batch {running[0]['id']} ({running[0]['name']}, running)" in line
    retry.proc.send_signal(signal.SIGTERM)  # what Airflow's supervisor sends a task it stops
    outcome = retry.outcome(timeout=60)
    assert f"Deleted Livy batch {running[0]['id']} because the task was killed" in outcome.output, outcome.output[-3000:]
    assert created(fake_server) == 1
    assert fake_server.batch_ids() == []


def test_worker_killed_for_good_leaves_a_batch_the_maintenance_sweep_removes(
    make_server: Callable[..., LivyServer], dag_runner: DagRunner, job_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker dies (SIGKILL: no on_kill, no cleanup) and no retry ever comes. The job still
    ends on the server, which keeps it (a long retention, as in production); the maintenance
    sweep leaves it alone while it runs and deletes it once it has been finished for min_age."""
    min_age = 1.0
    server = make_server({"livy.server.session.state-retain.sec": "1h"})
    dag = dag_runner.write_dag(
        "livy_orphan",
        'LivyBatchOperator(task_id="spark", file={job!r}, args=["sleep=6"], polling_interval=1, dag=dag)\n',
        job=job_file,
    )
    env = connection_env(server)
    worker = dag_runner.start(dag, "livy_orphan", env)
    running = wait_until(
        lambda: [b for b in server.get("/batches").json()["sessions"] if b["state"] == "running"], 120, "a running batch"
    )
    worker.proc.kill()
    worker.proc.wait()
    (orphan,) = running
    assert "Deleted Livy batch" not in worker.output()

    monkeypatch.setenv(*next(iter(env.items())))  # the sweep reads the same connection, in this process
    hook = LivyHook(retries=0)
    try:
        while_running = sweep_rest(hook_kinds(hook), min_age)
        assert while_running.report.deleted == [] and dict(while_running.report.kept) == {KEPT_ACTIVE: 1}
        assert server.batch_ids() == [orphan["id"]]

        finished = server.wait_for(orphan["id"], timeout=60)
        assert finished["state"] == "success", "the job ran to its end with nobody waiting for it"
        time.sleep(min_age)
        swept = sweep_rest(hook_kinds(hook), min_age)
    finally:
        hook.close()
    assert swept.report.deleted == [f"batch/{orphan['id']}"] and swept.report.errors == []
    assert swept.held == 0
    assert server.batch_ids() == []
    assert created(server) == 1
