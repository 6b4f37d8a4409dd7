"""Scala and shared interactive sessions on real local Spark, through the real server over loopback.

One server (recovery on, filesystem store) and ONE real `shared` session serve the module: a temp
view made in Python is counted in Scala and queried in SQL (one SparkSession; the Scala interpreter
starts at the first Scala statement, not before), a statement without a kind is a 400 naming the
choices, a Scala statement is cancelled, and after a kill -9 of the server and a restart the Scala
interpreter's state is still there (it lives in the driver). Then the server is killed for good:
the driver, Spark included, exits after livy.rsc.server.idle-timeout.
The Scala REPL's own outputs and errors are covered in test_repl_scala.py.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import LivyServer, kill_drivers, recovering_settings, start_server
from tests.test_sessions import drivers_of

pytestmark = pytest.mark.spark
SLOW = 300  # the first Scala statement compiles the REPL's prelude: tens of seconds on a loaded machine


def text(server: LivyServer, session_id: int, code: str, kind: str) -> str:
    output = server.run(session_id, code, timeout=SLOW, kind=kind)["output"]
    assert output["status"] == "ok", output
    return output["data"]["text/plain"]


def scala_started(server: LivyServer, session_id: int) -> bool:
    log = server.get(f"/sessions/{session_id}/log", params={"size": -1}).json()["log"]
    return any("Scala interpreter ready" in line for line in log)


def running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_shared_session_on_real_spark(tmp_path_factory: pytest.TempPathFactory) -> None:
    work_dir = tmp_path_factory.mktemp("scala-sessions")
    # a driver no server reached for 25 s exits: room for the restart below, short enough to wait for
    settings = {**recovering_settings(work_dir), "livy.rsc.server.idle-timeout": "25s"}
    server = start_server(work_dir, settings)
    restarted: LivyServer | None = None
    try:
        created = server.post("/sessions", json={"kind": "shared"})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert server.wait_for(sid, {"idle"}, path="/sessions", timeout=SLOW)["kind"] == "shared"

        no_kind = server.post(f"/sessions/{sid}/statements", json={"code": "1 + 1"})
        assert no_kind.status_code == 400
        assert all(kind in no_kind.json()["msg"] for kind in ("pyspark", "spark", "sql"))

        # one SparkSession: a view made in Python, counted in Scala, queried in SQL
        assert text(server, sid, "spark.range(5).createOrReplaceTempView('five')", "pyspark") == ""
        assert not scala_started(server, sid)  # lazily: nothing paid for Scala before its first statement
        assert text(server, sid, 'val n = spark.table("five").count()', "spark") == "val n: Long = 5"
        assert scala_started(server, sid)
        completion = server.post(f"/sessions/{sid}/completion", json={"code": "spark.ran", "kind": "spark"})
        assert completion.status_code == 200 and completion.json() == {"candidates": ["range"]}
        summed = server.run(sid, "SELECT sum(id) AS total FROM five", kind="sql")["output"]["data"]["application/json"]
        assert summed["data"] == [[10]]
        assert text(server, sid, "spark.table('five').count() * 2", "python") == "10"

        # a Scala statement blocked in a Spark job is cancelled; the interpreter goes on
        cancelled = server.cancel_running(
            sid, "sc.parallelize(1 to 2, 2).map { i => Thread.sleep(120000); i }.count()", kind="spark"
        )
        assert cancelled["output"]["status"] == "error"
        assert server.wait_for(sid, {"idle"}, path="/sessions", timeout=60)["state"] == "idle"

        # kill -9 of the server and a restart: Scala's state is still in the driver
        server.stop(signal.SIGKILL)
        restarted = start_server(work_dir, settings, port=server.port)
        assert restarted.wait_for(sid, {"idle"}, path="/sessions", timeout=60)["kind"] == "shared"
        assert text(restarted, sid, "n + 1", "scala").endswith(": Long = 6")

        # the server killed and never restarted: the driver (JVM and Python) exits on its own
        processes = drivers_of(restarted, sid)
        assert processes
        restarted.stop(signal.SIGKILL)
        deadline = time.monotonic() + 25 + 45  # the idle timeout, then Spark's shutdown on a loaded machine
        while alive := [p for p in processes if running(p)]:
            assert time.monotonic() < deadline, f"the driver outlived livy.rsc.server.idle-timeout: {alive}"
            time.sleep(0.5)
        log = (work_dir / "driver-logs" / "interactive" / f"{sid}.log").read_text()
        assert "no authenticated request for 25 s" in log
    finally:
        for each in (server, restarted):
            if each is not None:
                each.stop()
        kill_drivers(Path(work_dir))
