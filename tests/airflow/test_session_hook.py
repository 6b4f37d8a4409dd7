"""LivyHook and LivyAsyncHook session methods against the real server, whose fake spark-submit runs
the real REPL as plain Python (statements run, Spark jobs do not): create, wait, statements, long
polls, cancel, timeout, log, list, delete, with both hooks. The pure parts (argument handling,
DB-API literals and types) are checked without a server."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import inspect
import time

import pytest

from airflow_provider_livy.hooks import livy_dbapi
from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.hooks.waiting import WaitTimeout
from airflow_provider_livy.operators.livy_session import LivySessionOperator, statement_requests
from airflow_provider_livy.protocol import (
    SESSION_OPERATOR_ARGUMENTS,
    SESSION_REQUEST_FIELDS,
    BatchRequestError,
    output_error,
    output_value,
)
from tests.airflow.conftest import connection_env
from tests.conftest import LivyServer


@pytest.fixture
def hook(fake_server: LivyServer, monkeypatch: pytest.MonkeyPatch) -> LivyHook:
    for key, value in connection_env(fake_server).items():
        monkeypatch.setenv(key, value)
    return LivyHook(retries=1)


def test_sync_hook_session_lifecycle(hook: LivyHook, fake_server: LivyServer) -> None:
    view = hook.create_session({"name": "hook-test", "conf": {"spark.app.tag": "x"}})
    assert view["kind"] == "pyspark"
    session_id = view["id"]
    assert hook.find_session("hook-test")["id"] == session_id, "found by name"
    assert hook.wait_for_session(session_id, polling_interval=1, timeout=60) == "idle"
    assert [s["id"] for s in hook.list_sessions()] == [session_id]

    done = hook.run_statement(session_id, "x = 20\nprint('x is', x)\nx + 1", polling_interval=1)
    assert (done["state"], output_value(done["output"])) == ("available", "x is 20\n21")
    failed = hook.run_statement(session_id, "1/0", polling_interval=1)
    assert output_error(failed["output"]).startswith("ZeroDivisionError: division by zero\nTraceback")
    assert output_value(failed["output"]) is None

    # a long poll on a running statement is held by the server, then answered at its change
    running = hook.submit_statement(session_id, "import time; time.sleep(1.5); 'slept'")
    asked = time.monotonic()
    held = hook.get_statement(session_id, running["id"], wait=0.5)
    assert held["state"] in ("waiting", "running") and time.monotonic() - asked >= 0.4
    finished = hook.wait_for_statement(session_id, held, polling_interval=5)
    assert output_value(finished["output"]) == "'slept'"

    # a statement past its timeout is cancelled
    with pytest.raises(WaitTimeout, match="after 1s"):
        hook.run_statement(session_id, "import time; time.sleep(30)", polling_interval=1, timeout=1)
    last = fake_server.get(f"/sessions/{session_id}/statements").json()["statements"][-1]
    assert last["state"] in ("cancelling", "cancelled")

    lines, offset = hook.read_session_log(session_id)
    assert offset == len(lines) > 0
    assert hook.delete_session(session_id) is True
    assert hook.delete_session(session_id) is False, "already gone counts as done"
    assert hook.find_session(session_id) is None
    with pytest.raises(LivyError) as err:
        hook.get_statement(session_id, 0)
    assert err.value.status == 404


def test_async_hook_session_lifecycle(fake_server: LivyServer, hook: LivyHook) -> None:
    async def scenario() -> tuple[str, dict, dict, list, list]:
        ahook = LivyAsyncHook(retries=1)
        try:
            session_id = (await ahook.create_session({"kind": "python"}))["id"]  # Livy's alias for pyspark
            state = await ahook.wait_for_session(session_id, polling_interval=1, timeout=60)
            listed = await ahook.list_sessions()
            seen: list[str] = []
            done = await ahook.run_statement(
                session_id,
                "import time; time.sleep(0.5); 6 * 7",
                polling_interval=1,
                on_progress=lambda s: seen.append(s["state"]),
            )
            assert seen[-1] == "available"
            slow = await ahook.submit_statement(session_id, "import time; time.sleep(30)")
            await ahook.cancel_statement(session_id, slow["id"])
            cancelled = await ahook.wait_for_statement(session_id, slow, polling_interval=1, timeout=30)
            with pytest.raises(WaitTimeout):
                await ahook.run_statement(session_id, "import time; time.sleep(30)", polling_interval=1, timeout=1)
            # the deferred path's wait: the same rule as the sync hook's, the statement is cancelled at its timeout
            slower = await ahook.submit_statement(session_id, "import time; time.sleep(30)")
            with pytest.raises(WaitTimeout, match="after 1s"):
                await ahook.wait_for_statement(session_id, slower, polling_interval=1, timeout=1)
            timed_out = await ahook.get_statement(session_id, slower["id"])
            assert timed_out["state"] in ("cancelling", "cancelled")
            lines, _ = await ahook.read_session_log(session_id)
            assert lines and await ahook.delete_session(session_id) is True
            assert await ahook.delete_session(session_id) is False
            return state, done, cancelled, listed, await ahook.list_sessions()
        finally:
            await ahook.aclose()

    state, done, cancelled, listed, after = asyncio.run(scenario())
    assert state == "idle" and [v["kind"] for v in listed] == ["pyspark"]
    assert output_value(done["output"]) == "42"
    assert cancelled["state"] == "cancelled"
    assert after == [] and fake_server.get("/sessions").json()["sessions"] == []


def test_bad_requests_are_refused_before_sending(hook: LivyHook, fake_server: LivyServer) -> None:
    with pytest.raises(BatchRequestError, match="unknown session kind 'cobol'"):
        hook.create_session({"kind": "cobol"})
    with pytest.raises(BatchRequestError, match="driverMemory"):
        hook.create_session({"driverMemory": "lots"})
    with pytest.raises(BatchRequestError, match="code"):
        hook.submit_statement(1, None)  # type: ignore[arg-type]
    assert fake_server.get("/sessions").json()["total"] == 0


def test_operator_arguments_are_livys_session_fields() -> None:
    params = inspect.signature(LivySessionOperator.__init__).parameters
    assert set(SESSION_OPERATOR_ARGUMENTS) <= set(params)
    assert set(SESSION_OPERATOR_ARGUMENTS.values()) == set(SESSION_REQUEST_FIELDS)
    assert params["kind"].default == "pyspark"
    assert {"statements", "conf", "name"} <= set(LivySessionOperator.template_fields)
    op = LivySessionOperator(
        task_id="t", statements=["1"], kind="python", conf={"a": 1, "b": True}, driver_cores="2", name="n", ttl="1h"
    )
    body = op.session_request({})
    assert body == {"kind": "pyspark", "conf": {"a": "1", "b": "true"}, "driverCores": 2, "name": "n", "ttl": "1h"}
    with pytest.raises(BatchRequestError, match="unknown session kind"):
        LivySessionOperator(task_id="t2", statements=["1"], kind="cobol")
    assert statement_requests(["a", {"code": "select 1", "kind": "sql"}]) == [{"code": "a"}, {"code": "select 1", "kind": "sql"}]
    for bad, message in (
        ("x = 1", "must be a list"),
        ([{"code": "1", "extra": 1}], "statement 0: unknown field"),
        ([1], "statement 0: the request body must be a JSON object"),
        (["ok", {"kind": "sql"}], "statement 1: field 'code' is required"),
    ):
        with pytest.raises(BatchRequestError, match=message):
            statement_requests(bad)
    assert statement_requests([{"code": "1", "kind": "spark"}], "shared") == [{"code": "1", "kind": "spark"}]
    with pytest.raises(BatchRequestError, match="statement 1: a shared session runs only statements that name their kind"):
        statement_requests([{"code": "1", "kind": "sql"}, "1"], "shared")


def test_dbapi_literals_and_types() -> None:
    literal = livy_dbapi.literal
    assert literal("it's \\ a\x00") == "'it\\'s \\\\ a\\u0000'"
    assert [literal(v) for v in (None, True, 3, 1.5, decimal.Decimal("1.10"))] == ["NULL", "TRUE", "3", "1.5D", "1.10BD"]
    assert literal(float("nan")) == "CAST('NaN' AS DOUBLE)" and literal(float("-inf")) == "CAST('-Infinity' AS DOUBLE)"
    assert literal(b"\x01\xff") == "X'01ff'"
    assert literal(datetime.date(2026, 1, 2)) == "DATE '2026-01-02'"
    assert literal(datetime.datetime(2026, 1, 2, 3, 4, 5)) == "TIMESTAMP '2026-01-02 03:04:05'"
    assert literal((1, "a")) == "(1, 'a')"
    for bad in (object(), [], "\ud800"):
        with pytest.raises(livy_dbapi.ProgrammingError):
            literal(bad)
    assert livy_dbapi.render("select %s, '%%'", ["x"]) == "select 'x', '%'"
    assert livy_dbapi.render("select %(a)s", {"a": 1}) == "select 1"
    assert livy_dbapi.render("select '%'", None) == "select '%'", "no parameters: the text is sent as it is"
    with pytest.raises(livy_dbapi.ProgrammingError):
        livy_dbapi.render("select %s, %s", [1])

    assert livy_dbapi.describe_field({"name": "m", "type": "decimal(10,2)", "nullable": False}) == (
        "m",
        "decimal(10,2)",
        None,
        None,
        10,
        2,
        False,
    )
    assert livy_dbapi.NUMBER == "decimal(10,2)" and livy_dbapi.NUMBER == "long" and livy_dbapi.NUMBER != "string"
    assert livy_dbapi.STRING == "varchar(5)" and livy_dbapi.DATETIME == "timestamp" and livy_dbapi.BINARY == "binary"
    assert livy_dbapi.spark_type_name({"type": "array", "elementType": "integer"}) == "array"
    assert livy_dbapi.python_value("2026-01-02", "date") == datetime.date(2026, 1, 2)
    assert livy_dbapi.python_value(1.5, "decimal(5,2)") == decimal.Decimal("1.5")
    assert livy_dbapi.python_value("AQI=", "binary") == b"\x01\x02"
