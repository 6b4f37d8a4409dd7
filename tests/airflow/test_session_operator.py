"""LivySessionOperator, LivySessionTrigger and LivySqlHook in real Airflow (dag.test in a subprocess)
against the real server.

The real-Spark cases run local Spark (each session is a Spark driver, ~10-20 s): several assertions
share one DAG run. The failing-statement, crash/retry and kill cases use the quick fake spark-submit,
which runs the same REPL as plain Python: they are about what the operator does (fail, delete, which
session exists when), on the path the real-Spark cases cover end to end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime

import pytest
from airflow.jobs.triggerer_job_runner import TriggerRunner
from airflow.sdk.exceptions import TaskDeferralTimeout

from airflow_provider_livy.hooks import livy_dbapi
from airflow_provider_livy.operators.livy_session import LivySessionOperator, session_name
from airflow_provider_livy.operators.livy_task import FAIL_METHOD
from airflow_provider_livy.triggers.livy import LivySessionTrigger
from tests.airflow.conftest import DagRunner, connection_env, wait_until
from tests.airflow.test_deferral import run_then_cancel, task_context
from tests.conftest import LivyServer


def sessions(server: LivyServer) -> list[dict]:
    return server.get("/sessions", params={"size": 1000}).json()["sessions"]


def created_sessions(server: LivyServer) -> int:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith("livy_interactive_created_total"):
            return int(float(line.split()[1]))
    raise AssertionError("no livy_interactive_created_total in /metrics")


SQL_ROWS = 5  # the server's cap on a sql statement's rows (livy.rsc.sql.num-rows), small enough to reach


@pytest.fixture(scope="module")
def spark_server(tmp_path_factory: pytest.TempPathFactory):
    """One server running real local Spark for the module's DAG runs."""
    from tests.conftest import kill_drivers, start_server

    work_dir = tmp_path_factory.mktemp("spark-sessions")
    server = start_server(work_dir, {"livy.spark.master": "local[1]", "livy.rsc.sql.num-rows": str(SQL_ROWS)})
    yield server
    server.stop()
    kill_drivers(work_dir)


@pytest.mark.spark
@pytest.mark.timeout(1800)  # two Spark drivers one after the other; minutes on a loaded machine
def test_session_operator_with_real_spark(spark_server: LivyServer, dag_runner: DagRunner) -> None:
    """Sync and deferrable, pyspark and sql: one DAG run, zero sessions after."""
    server = spark_server
    dag = dag_runner.write_dag(
        "livy_sessions",
        """
        LivySessionOperator(task_id="state", statements=["x = 21", "y = x * 2", "print('y is', y)\\ny",
                            {{"code": "select {{{{ params.n }}}} as n", "kind": "sql"}}, "import time; time.sleep(7); y"],
                            params={{"n": 5}}, conf={{"spark.ui.enabled": False}}, polling_interval=2, dag=dag)
        LivySessionOperator(task_id="sql", kind="sql", deferrable=True, polling_interval=2, dag=dag,
                            statements=["create temporary view v as select 1 as a, 'x' as b", "select * from v"])
        """,
    )
    outcome = dag_runner.run(dag, "livy_sessions", connection_env(server), timeout=1700)
    out = outcome.output
    states = {t: outcome.task(t)["state"] for t in ("state", "sql")}
    assert states == {"state": "success", "sql": "success"}, out[-5000:]

    state = outcome.task("state")["xcom"]
    assert str(state["return_value"]) == "42", "the last statement's text/plain, with state kept across statements"
    assert isinstance(state["session_id"], int) and state["app_id"]
    assert "y is 42" in out, "each statement's output reaches the task log"
    assert '"data":[[5]]' in out, "a sql statement in a pyspark session, templated from params"
    assert "% done" in out, "a long statement logs its progress"

    sql = outcome.task("sql")["xcom"]
    assert sql["return_value"]["data"] == [[1, "x"]], "deferred, across statements of a sql session"
    assert [(f["name"], f["type"]) for f in sql["return_value"]["schema"]["fields"]] == [("a", "integer"), ("b", "string")]
    assert sql["app_id"] and sql["session_id"] != state["session_id"]
    assert sessions(server) == [], "every session deleted"
    assert created_sessions(server) == 2


def test_failing_statements_fail_the_task_and_delete_the_session(fake_server: LivyServer, dag_runner: DagRunner) -> None:
    """Sync and deferrable, a failing statement fails the task, stops the statements after it and deletes the
    session; an invalid statement list sends nothing. The REPL is the real one, run as plain Python: the error
    comes from Python either way (test_sessions_spark covers Livy's error shape on real Spark)."""
    dag = dag_runner.write_dag(
        "livy_sessions_failing",
        """
        LivySessionOperator(task_id="fails", statements=["z = 1", "print('before'); 1/0", "print('never ran')"],
                            polling_interval=1, dag=dag)
        LivySessionOperator(task_id="deferred_fails", statements=["q = 0", "1 / q", "print('never ran')"],
                            deferrable=True, polling_interval=1, dag=dag)
        LivySessionOperator(task_id="invalid", statements=["1", {{"code": "1", "kind": "cobol"}}], dag=dag)
        """,
    )
    outcome = dag_runner.run(dag, "livy_sessions_failing", connection_env(fake_server))
    out = outcome.output
    states = {t: outcome.task(t)["state"] for t in ("fails", "deferred_fails", "invalid")}
    assert states == {"fails": "failed", "deferred_fails": "failed", "invalid": "failed"}, out[-5000:]
    assert out.count("ZeroDivisionError: division by zero") >= 2, "sync and deferred, the error is in the task log"
    assert "statement 1 failed" in out and "never ran" not in out
    assert "invalid statements for task invalid: statement 1: unknown session kind 'cobol'" in out
    assert sessions(fake_server) == [], "every session deleted after failure"
    assert created_sessions(fake_server) == 2, "the invalid task sent nothing"


def test_retry_after_worker_crash_deletes_the_earlier_session_and_kill_deletes_the_new(
    fake_server: LivyServer, dag_runner: DagRunner
) -> None:
    """Try 1 runs a statement and its worker dies (SIGKILL: no cleanup). The retry finds that session
    by its deterministic name and deletes it before creating its own: one session at a time, never two.
    Then Airflow stops the retry (SIGTERM) and on_kill deletes its session."""
    server = fake_server
    dag = dag_runner.write_dag(
        "livy_session_crash",
        'LivySessionOperator(task_id="repl", statements=["import time; time.sleep(300)"], polling_interval=1, dag=dag)\n',
    )
    logical_date = datetime.now(UTC).isoformat()
    env = connection_env(server)

    def busy() -> list[dict]:
        return [s for s in sessions(server) if s["state"] == "busy"]

    worker = dag_runner.start(dag, "livy_session_crash", env, logical_date)
    (first,) = wait_until(busy, 240, "the first try's statement to run")
    worker.proc.kill()
    worker.proc.wait()
    assert [s["id"] for s in sessions(server)] == [first["id"]], "the crash left its session behind"

    retry = dag_runner.start(dag, "livy_session_crash", env, logical_date)  # same dag, task and run_id: a retry
    line = retry.wait_for_output("that an earlier try left behind", timeout=240)
    assert f"Deleting session {first['id']} ({first['name']}, busy)" in line
    (second,) = wait_until(busy, 240, "the retry's statement to run")
    assert [s["id"] for s in sessions(server)] == [second["id"]] != [first["id"]], "one session, not two"
    assert second["name"] == first["name"], "the retry starts afresh under the same deterministic name"
    retry.proc.send_signal(signal.SIGTERM)  # what Airflow's supervisor sends a task it stops
    outcome = retry.outcome(timeout=120)
    assert f"Deleted Livy session {second['id']} because the task was killed" in outcome.output, outcome.output[-3000:]
    assert sessions(server) == []
    assert created_sessions(server) == 2


def test_execution_timeout_deletes_the_session(fake_server: LivyServer, dag_runner: DagRunner) -> None:
    """A synchronous task past its execution_timeout: Airflow raises AirflowTaskTimeout in it while the
    statement runs, and the session goes on the way out (the REPL is the real one, run as plain Python)."""
    dag = dag_runner.write_dag(
        "livy_session_timeout",
        """
        LivySessionOperator(task_id="too_slow", statements=["import time; time.sleep(600)"],
                            execution_timeout=timedelta(seconds=10), polling_interval=1, dag=dag)
        """,
    )
    outcome = dag_runner.run(dag, "livy_session_timeout", connection_env(fake_server))
    task = outcome.task("too_slow")
    assert task["state"] == "failed", outcome.output[-3000:]
    session_id = task["xcom"]["session_id"]
    assert f"[livy session {session_id}] statement 0 (id 0) submitted" in outcome.output, "it timed out mid-statement"
    assert f"Deleted Livy session {session_id} because the task stopped (AirflowTaskTimeout)" in outcome.output
    assert sessions(fake_server) == []
    assert created_sessions(fake_server) == 1


def after(seconds: float) -> Callable[[], bool]:
    """Ready once the trigger has long-polled for a while (it has no log offset to watch, unlike the batch one)."""
    start = time.monotonic()
    return lambda: time.monotonic() - start > seconds


def test_deferred_statement_kill_restart_timeout_and_deferral_timeout(
    fake_server: LivyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_livy.hooks.livy import LivyHook

    server = fake_server
    for key, value in connection_env(server).items():
        monkeypatch.setenv(key, value)
    hook = LivyHook(retries=1)
    op = LivySessionOperator(task_id="repl", statements=["import time; time.sleep(300)"], deferrable=True)
    context = task_context("livy_session_deferral", "repl", "manual__2026-01-01T00:00:00+00:00")
    name = op.session_request(context)["name"]
    assert name == session_name("livy_session_deferral", "repl", "manual__2026-01-01T00:00:00+00:00")

    def running_session() -> tuple[int, int]:
        session_id = hook.create_session({"name": name})["id"]
        assert hook.wait_for_session(session_id, 1, 120) == "idle"
        return session_id, hook.submit_statement(session_id, "import time; time.sleep(300)")["id"]

    session_id, statement_id = running_session()
    stored = LivySessionTrigger(session_id, polling_interval=1, statement_id=statement_id, index=0).serialize()
    assert json.loads(json.dumps(stored[1]))["statement_id"] == statement_id

    def rebuilt() -> LivySessionTrigger:  # as the triggerer builds it from what was stored at deferral
        return TriggerRunner().get_trigger_by_classpath(stored[0])(**json.loads(json.dumps(stored[1])))

    assert asyncio.run(run_then_cancel(rebuilt(), by_user=False, ready=after(2))) == []
    assert hook.get_session_state(session_id) == "busy", "a triggerer restart keeps the session"
    assert asyncio.run(run_then_cancel(rebuilt(), by_user=True, ready=after(2))) == []
    assert sessions(server) == [], "a user's kill while deferred deletes the session"

    # the trigger's own deadline (execution_timeout or statement_timeout) deletes the session too
    session_id, statement_id = running_session()
    deadline = datetime.now(UTC).timestamp() + 1.5

    async def first_event() -> dict:
        trigger = LivySessionTrigger(session_id, polling_interval=1, statement_id=statement_id, deadline=deadline)
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["status"] == "timeout" and f"deleted session {session_id}" in event["message"]
    assert sessions(server) == []

    # Airflow's deferral timeout resumes the task with __fail__: the session is found by name and deleted
    session_id, _ = running_session()
    with pytest.raises(TaskDeferralTimeout):
        op.resume_execution(FAIL_METHOD, {"error": "Trigger timeout"}, context)
    assert sessions(server) == []
    assert created_sessions(server) == 3


@pytest.mark.spark
@pytest.mark.timeout(1800)
def test_sql_operators_through_livy_sql_hook(spark_server: LivyServer, dag_runner: DagRunner) -> None:
    """Airflow's own SQL operators on a livy_sql connection: get_hook() finds LivySqlHook, each run is one
    sql session on real Spark, parameters arrive as literals (quotes, backslashes and all), nothing is left."""
    server = spark_server
    before = created_sessions(server)
    tricky = "it's a \\\\ test'; select 'injected"
    dag = dag_runner.write_dag(
        "livy_sql_operators",
        """
        from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator, SQLValueCheckOperator

        SQLExecuteQueryOperator(
            task_id="query", conn_id="livy_sql", dag=dag,
            sql="select %(s)s as s, %(n)s as n, cast(%(d)s as string) as d union all select 'b', 2, null order by n",
            parameters={{"s": {tricky!r}, "n": 1, "d": datetime(2026, 1, 2).date()}},
        )
        SQLValueCheckOperator(task_id="check", conn_id="livy_sql", sql="select count(*) from range(5)", pass_value=5, dag=dag)
        SQLValueCheckOperator(task_id="check_fails", conn_id="livy_sql", sql="select 4", pass_value=5, dag=dag)
        """,
        tricky=tricky,
    )
    env = connection_env(server, "livy_sql", "livy_sql")
    outcome = dag_runner.run(dag, "livy_sql_operators", env, timeout=1200)
    states = {t: outcome.task(t)["state"] for t in ("query", "check", "check_fails")}
    assert states == {"query": "success", "check": "success", "check_fails": "failed"}, outcome.output[-5000:]
    # rows are tuples (common-sql's rule); XCom keeps them as Airflow's serde writes a tuple
    rows = [row["__data__"] if isinstance(row, dict) else row for row in outcome.task("query")["xcom"]["return_value"]]
    assert rows == [[tricky, 1, "2026-01-02"], ["b", 2, None]]
    assert "Deleted Livy sql session" in outcome.output
    assert sessions(server) == [], "every connection's session deleted when Airflow closed it"
    assert created_sessions(server) - before == 3


@pytest.mark.spark
def test_dbapi_cursor_fetches_in_steps_and_warns_when_the_server_capped_the_rows(
    spark_server: LivyServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PEP 249 through LivySqlHook.get_conn() on real Spark: fetchone/fetchmany/fetchall walk one result,
    and a result the server cut at livy.rsc.sql.num-rows says so in a warning (one exactly at the cap does not)."""
    from airflow_provider_livy.hooks.livy_sql import LivySqlHook

    server = spark_server
    before = created_sessions(server)
    for key, value in connection_env(server, "livy_sql", "livy_sql").items():
        monkeypatch.setenv(key, value)
    capped = "Livy capped the result"
    with closing(LivySqlHook(livy_conn_id="livy_sql", polling_interval=1).get_conn()) as conn:
        cursor = conn.cursor()
        with caplog.at_level(logging.WARNING, logger=livy_dbapi.__name__):
            cursor.execute("select id, id * 2 as twice from range(%s)", [SQL_ROWS])
            assert cursor.rowcount == SQL_ROWS and cursor.fetchall() == [(i, 2 * i) for i in range(SQL_ROWS)]
            assert capped not in caplog.text, "exactly num-rows rows: nothing was cut"
            cursor.execute("select id, id * 2 as twice from range(%s)", [SQL_ROWS + 2])
        assert f"{capped} at {SQL_ROWS} rows (livy.rsc.sql.num-rows)" in caplog.text
        assert [entry[:2] for entry in cursor.description] == [("id", "long"), ("twice", "long")]
        assert cursor.rowcount == SQL_ROWS
        assert cursor.fetchone() == (0, 0)
        assert cursor.fetchmany(2) == [(1, 2), (2, 4)]
        assert cursor.fetchmany() == [(3, 6)], "arraysize rows: 1"
        assert cursor.fetchmany(5) == [(4, 8)], "what is left, not more"
        assert cursor.fetchone() is None and cursor.fetchmany(3) == [] and cursor.fetchall() == []
        assert [s["id"] for s in sessions(server)] == [conn.session_id]
    assert sessions(server) == [], "closing the connection deleted its session"
    assert created_sessions(server) - before == 1
