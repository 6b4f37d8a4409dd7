"""Interactive sessions on real local Spark, through the real server over loopback.

One server (recovery on, filesystem store) and two real Spark drivers serve the whole module:
statements keep their variables, errors and sql have Livy's shapes, a 120 s Spark job is
cancelled and the session goes on, a kill -9 of the server and a restart bring the session back
with its variables and history, DELETE leaves no driver process, and the idle timeout ends a
session and its driver.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from tests.conftest import LivyServer, kill_drivers, recovering_settings, start_server
from tests.test_sessions import drivers_of

pytestmark = pytest.mark.spark


def spark_processes(server: LivyServer, session_id: int) -> list[psutil.Process]:
    """The session's supervisor, spark-submit JVM and Python REPL (they carry its environment)."""
    return drivers_of(server, session_id)


def test_sessions_on_real_spark(tmp_path_factory: pytest.TempPathFactory) -> None:
    work_dir = tmp_path_factory.mktemp("spark-sessions")
    settings = recovering_settings(work_dir)
    server = start_server(work_dir, settings)
    restarted: LivyServer | None = None
    try:
        first = server.post("/sessions", json={"kind": "pyspark", "name": "real-notebook"}).json()
        second = server.post("/sessions", json={"kind": "sql", "idleTimeout": "30s"}).json()
        sid, sql_id = first["id"], second["id"]

        # sql: schema and data, in a sql session (idle for 30 s after this, it will be ended)
        server.wait_for(sql_id, {"idle"}, path="/sessions", timeout=300)
        answer = server.run(sql_id, "select 1 as n, 'a' as s")["output"]["data"]["application/json"]
        assert [f["name"] for f in answer["schema"]["fields"]] == ["n", "s"]
        assert answer["data"] == [[1, "a"]]
        sql_processes = spark_processes(server, sql_id)
        assert sql_processes

        view = server.wait_for(sid, {"idle"}, path="/sessions", timeout=300)
        assert view["appId"] and view["appId"].startswith("local-"), view
        assert view["appInfo"]["sparkUiUrl"].startswith("http://")

        # variables persist across statements; Spark is there; errors have Livy's shape; sql per statement
        assert server.run(sid, "x = spark.range(10).count()\nx")["output"]["data"]["text/plain"] == "10"
        assert server.run(sid, "x * 2")["output"]["data"]["text/plain"] == "20"
        error = server.run(sid, "spark.sql('select * from no_such_table')")["output"]
        assert error["status"] == "error" and error["ename"] and error["evalue"] and error["traceback"]
        per_statement = server.run(sid, "select 2 as two", kind="sql")["output"]["data"]["application/json"]
        assert per_statement["data"] == [[2]]

        # a 120 s Spark job, cancelled; the session goes on
        server.cancel_running(sid, "import time\nsc.parallelize(range(2), 2).map(lambda i: time.sleep(60) or i).collect()")
        assert server.wait_for(sid, {"idle"}, path="/sessions", timeout=60)["state"] == "idle"
        assert server.run(sid, "x + 1")["output"]["data"]["text/plain"] == "11"

        # kill -9 of the server, a restart: the session comes back with its variables and history
        server.stop(signal.SIGKILL)
        restarted = start_server(work_dir, settings, port=server.port)
        back = restarted.wait_for(sid, {"idle"}, path="/sessions", timeout=60)
        assert back["name"] == "real-notebook" and back["appId"] == view["appId"]
        assert restarted.run(sid, "x")["output"]["data"]["text/plain"] == "10"
        codes = [s["code"] for s in restarted.get(f"/sessions/{sid}/statements").json()["statements"]]
        assert codes[0].startswith("x = spark.range") and codes[-1] == "x"

        # the sql session, idle for its idleTimeout (counted from its last statement): ended, its driver stopped
        ended = restarted.wait_for(sql_id, {"killed", "dead"}, path="/sessions", timeout=120)
        assert ended["state"] == "killed"
        assert ended["finishedAt"] - ended["lastActivityAt"] >= 29.5
        assert not [p for p in sql_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

        # DELETE of a live session answers once its driver is gone
        processes = spark_processes(restarted, sid)
        assert processes
        assert restarted.delete(f"/sessions/{sid}").json() == {"msg": "deleted"}
        assert not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    finally:
        for each in (server, restarted):
            if each is not None:
                each.stop()
        kill_drivers(Path(work_dir))
