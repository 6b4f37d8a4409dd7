"""Interactive sessions through the real server, with the real REPL driver running as plain Python.

The fake spark-submit execs the REPL (server/repl/livy_repl, one zip) with LIVY_REPL_NO_SPARK=1: the channel, the
statements, cancel, the clocks and the lifecycle are all real, only Spark is absent (a session
is up in a fraction of a second). test_sessions_spark.py runs the same paths on real Spark.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import LivyServer
from tests.state_store import StoreView

ENDED = {"killed", "dead", "error", "success"}


def drivers_of(server: LivyServer, session_id: int) -> list[psutil.Process]:
    """The live processes of a session's driver: the REPL launched with the session's callback."""
    suffix = f"/internal/repl/{session_id}"
    found = []
    for proc in psutil.process_iter(["environ", "status"]):
        try:
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        callback = env.get("LIVY_REPL_CALLBACK", "")
        if callback.endswith(suffix) and f":{server.port}/" in callback and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def metric(server: LivyServer, name: str) -> float:
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def test_session_lifecycle_statements_and_delete(fake_server: LivyServer) -> None:
    response = fake_server.post("/sessions", json={"kind": "python", "heartbeatTimeoutInSecond": 60, "driverMemory": "1g"})
    assert response.status_code == 201, response.text
    created = response.json()
    sid = created["id"]
    assert response.headers["Location"] == f"/sessions/{sid}"
    assert created["state"] in ("starting", "idle")
    assert created["kind"] == "pyspark" and created["driverMemory"] == "1g" and created["heartbeatTimeoutInSecond"] == 60
    for key in ("id", "name", "appId", "owner", "proxyUser", "state", "kind", "appInfo", "log", "ttl", "idleTimeout"):
        assert key in created
    view = fake_server.wait_for(sid, {"idle"}, path="/sessions", timeout=30)
    assert view["createdAt"] <= view["lastActivityAt"] <= view["expiresAt"]
    assert "secret" not in str(view).lower() and "LIVY_REPL" not in str(view)
    assert fake_server.get(f"/sessions/{sid}/state").json() == {"id": sid, "state": "idle"}

    # the name reaches spark-submit as --name (the supervisor's command line holds spark-submit's)
    (supervisor,) = [p for p in drivers_of(fake_server, sid) if "supervisor.py" in " ".join(p.cmdline())]
    command = supervisor.cmdline()
    assert command[command.index("--name") + 1] == f"livy-session-{sid}"
    assert not any("secret" in arg.lower() for arg in command)

    # variables persist, errors have Livy's shape, magics and completion work
    first = fake_server.run(sid, "x = 41\nprint('hello')\nx + 1")
    assert first["state"] == "available"
    assert first["output"] == {"status": "ok", "execution_count": 0, "data": {"text/plain": "hello\n42"}}
    assert fake_server.run(sid, "x")["output"]["data"]["text/plain"] == "41"
    failed = fake_server.run(sid, "1 / 0")["output"]
    assert failed["status"] == "error" and failed["ename"] == "ZeroDivisionError"
    assert failed["evalue"] and isinstance(failed["traceback"], list)
    table = fake_server.run(sid, "rows = [{'a': 1, 'b': 'x'}]\n%table rows")["output"]["data"]
    assert table["application/vnd.livy.table.v1+json"]["data"] == [[1, "x"]]
    completion = fake_server.post(f"/sessions/{sid}/completion", json={"code": "x.bit_le", "kind": "pyspark"})
    assert completion.status_code == 200 and "x.bit_length()" in completion.json()["candidates"]

    listed = fake_server.get(f"/sessions/{sid}/statements", params={"order": "desc", "size": 2}).json()
    assert listed["total_statements"] == 4
    assert [s["id"] for s in listed["statements"]] == [3, 2]
    assert fake_server.get(f"/sessions/{sid}/statements/99").status_code == 404
    assert fake_server.get(f"/sessions/{sid}/statements/0", params={"wait": "soon"}).status_code == 400

    # Livy's log paging: from=-1 (or none) is the last `size` lines; size=-1 is all
    last = fake_server.get(f"/sessions/{sid}/log", params={"from": -1, "size": 1}).json()
    assert last["total"] >= 3 and last["from"] == last["total"] - 1 and len(last["log"]) == 1
    assert len(fake_server.get(f"/sessions/{sid}/log", params={"size": -1}).json()["log"]) == last["total"]

    assert metric(fake_server, "livy_interactive_statements_run_total") >= 4
    assert metric(fake_server, 'livy_interactive_sessions{kind="pyspark",state="idle"}') == 1
    assert metric(fake_server, "livy_interactive_statements_failed_total") >= 1

    # DELETE answers once the driver is gone
    assert fake_server.delete(f"/sessions/{sid}").json() == {"msg": "deleted"}
    assert not drivers_of(fake_server, sid)
    assert fake_server.get(f"/sessions/{sid}").status_code == 404
    assert fake_server.post(f"/sessions/{sid}/statements", json={"code": "1"}).status_code == 404


def test_cancel_a_long_statement_and_keep_going(fake_server: LivyServer) -> None:
    sid = fake_server.open_session()["id"]
    started = fake_server.post(f"/sessions/{sid}/statements", json={"code": "import time\ntime.sleep(120)"}).json()
    fake_server.wait_for(sid, {"busy"}, path="/sessions", timeout=10)
    assert fake_server.post(f"/sessions/{sid}/statements/{started['id']}/cancel").json() == {"msg": "canceled"}
    deadline = time.monotonic() + 20
    while (statement := fake_server.get(f"/sessions/{sid}/statements/{started['id']}", params={"wait": 5}).json())[
        "state"
    ] != "cancelled":
        assert time.monotonic() < deadline, statement
    fake_server.wait_for(sid, {"idle"}, path="/sessions", timeout=10)
    assert fake_server.run(sid, "2 * 21")["output"]["data"]["text/plain"] == "42"
    assert metric(fake_server, "livy_interactive_statements_cancelled_total") == 1


BAD_SESSION_REQUESTS = [
    ({"kind": "cobol"}, "unknown session kind"),
    ({"file": "x.py"}, "unknown field"),
    ({"ttl": "10"}, "duration"),
    ({"idleTimeout": "0s"}, "positive duration"),  # not a silent "use the server default"
    ({"heartbeatTimeoutInSecond": -1}, "heartbeatTimeoutInSecond"),
    ({"jars": ["/etc/passwd"]}, "not in an allowed directory"),
    ({"pyFiles": ["/etc/hosts"]}, "not in an allowed directory"),
    ({"files": ["local:///etc/passwd"]}, "not in an allowed directory"),  # local: is this host in client mode
    ({"archives": ["/etc/hosts"]}, "not in an allowed directory"),
    ({"conf": {"spark.jars": "local:///etc/passwd"}}, "not in an allowed directory"),
    ({"conf": {"spark.master": "yarn"}}, "set by the server"),
    ({"proxyUser": "root"}, "impersonation"),
]


def test_bad_session_requests_are_400(fake_server: LivyServer) -> None:
    """One server for every case: each is refused with a reason, and nothing is created."""
    for body, words in BAD_SESSION_REQUESTS:
        response = fake_server.post("/sessions", json=body)
        assert response.status_code == 400, (body, response.text)
        assert words.lower() in response.json()["msg"].lower(), (body, response.text)
    assert fake_server.get("/sessions").json()["total"] == 0


def test_idle_timeout_ends_an_idle_session_and_spares_a_busy_one(fake_server: LivyServer) -> None:
    idle = fake_server.open_session(idleTimeout="2s")
    busy = fake_server.open_session(idleTimeout="2s")
    fake_server.post(f"/sessions/{busy['id']}/statements", json={"code": "import time\ntime.sleep(5)"})
    time.sleep(3.5)  # both past 2 s since their last activity; the busy one runs on
    assert fake_server.get(f"/sessions/{idle['id']}/state").json()["state"] in ENDED | {"shutting_down"}
    assert fake_server.get(f"/sessions/{busy['id']}/state").json()["state"] == "busy"
    ended = fake_server.wait_for(idle["id"], ENDED, path="/sessions", timeout=15)
    assert ended["state"] == "killed"
    assert not drivers_of(fake_server, idle["id"])
    log = fake_server.get(f"/sessions/{idle['id']}/log", params={"size": -1}).json()["log"]
    assert any("idle for 2s" in line for line in log)
    # the busy one finishes at ~5 s, then is idle 2 s more, then ends: not before (read from its clocks, since
    # a loaded machine may make the test's polls miss the 2 s it spends idle)
    ended_busy = fake_server.wait_for(busy["id"], ENDED, path="/sessions", timeout=25)
    assert ended_busy["state"] == "killed"
    assert ended_busy["lastActivityAt"] >= busy["createdAt"] + 5  # its statement ran to its end
    assert ended_busy["finishedAt"] >= ended_busy["lastActivityAt"] + 2  # then it was idle 2 s
    assert metric(fake_server, 'livy_interactive_ended_total{reason="idle"}') == 2


def test_heartbeat_less_session_is_ended_and_ttl_ends_a_polled_one(fake_server: LivyServer) -> None:
    silent = fake_server.open_session(heartbeatTimeoutInSecond=2)
    polled = fake_server.open_session(ttl="4s")
    deadline = time.monotonic() + 20
    while fake_server.get(f"/sessions/{polled['id']}/state").json()["state"] not in ENDED:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert time.time() >= polled["createdAt"] + 4
    # the silent one was never polled after start: its heartbeat ran out at ~2 s
    ended = fake_server.get(f"/sessions/{silent['id']}").json()
    assert ended["state"] == "killed"
    log = "\n".join(fake_server.get(f"/sessions/{silent['id']}/log", params={"size": -1}).json()["log"])
    assert "heartbeatTimeoutInSecond" in log
    assert metric(fake_server, 'livy_interactive_ended_total{reason="heartbeat"}') == 1
    assert metric(fake_server, 'livy_interactive_ended_total{reason="ttl"}') == 1
    assert not drivers_of(fake_server, silent["id"]) and not drivers_of(fake_server, polled["id"])


def test_max_sessions_counts_batches_and_sessions(make_server: Callable[..., LivyServer], job_file: str) -> None:
    """Both limits count both families: max-creation (drivers starting at once) and max-sessions (held)."""
    server = make_server({"livy.server.session.max-sessions": "2", "livy.server.session.max-creation": "1"})
    batch = server.submit(file=job_file, args=["delay=5", "sleep=30"])  # its driver starts for 5 s: the one slot
    waiting = server.post("/sessions", json={}).json()
    assert waiting["state"] == "starting" and not drivers_of(server, waiting["id"])
    assert server.get(f"/batches/{batch['id']}/state").json()["state"] == "starting"
    assert server.wait_for(waiting["id"], {"idle"}, path="/sessions", timeout=30)["state"] == "idle"
    refused = server.post("/sessions", json={})
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert server.post("/batches", json={"file": job_file}).status_code == 503


def test_csrf_and_access_control_apply_to_sessions(make_server: Callable[..., LivyServer], tmp_path: Path) -> None:
    from airflow_provider_livy.server.security import add_user

    users = tmp_path / "users"
    add_user(str(users), "alice", "a-pass")
    add_user(str(users), "bob", "b-pass")
    server = make_server(
        {
            "livy.server.auth.type": "basic",
            "livy.server.auth.basic.users-file": str(users),
            "livy.server.access-control.enabled": "true",
            "livy.server.csrf-protection.enabled": "true",
            # the driver's bounds come from the server's keys
            "livy.rsc.statement.max-output-bytes": "2000",
            "livy.rsc.retained-statements": "2",
        }
    )
    server.session.auth = ("alice", "a-pass")
    del server.session.headers["X-Requested-By"]
    assert server.post("/sessions", json={}).status_code == 400  # CSRF
    server.session.headers["X-Requested-By"] = "tests"
    session = server.open_session()
    assert session["owner"] == "alice"
    assert server.run(session["id"], "1 + 1")["output"]["data"]["text/plain"] == "2"
    capped = server.run(session["id"], "print('y' * 5000)")["output"]["data"]["text/plain"]
    assert len(capped) < 2000 and capped.endswith("truncated at 2000 bytes (livy.rsc.statement.max-output-bytes)]")
    server.run(session["id"], "3")
    kept = server.get(f"/sessions/{session['id']}/statements").json()
    assert (kept["total_statements"], [s["id"] for s in kept["statements"]]) == (2, [1, 2])
    server.session.auth = ("bob", "b-pass")
    assert server.get(f"/sessions/{session['id']}").status_code == 403
    assert server.post(f"/sessions/{session['id']}/statements", json={"code": "1"}).status_code == 403
    assert server.get(f"/sessions/{session['id']}/statements").status_code == 403
    assert server.delete(f"/sessions/{session['id']}").status_code == 403
    assert server.get("/sessions").json()["total"] == 0
    server.session.auth = None
    assert server.get("/sessions").status_code == 401
    # the driver's callback is not a user API: without the session's secret it is refused
    assert server.post(f"/internal/repl/{session['id']}", json={"address": "http://127.0.0.1:1"}).status_code == 401


def test_kill_9_and_restart_bring_sessions_back(make_server: Callable[..., LivyServer], store: StoreView) -> None:
    """Both stores: a live session comes back with its variables and history; one whose driver
    died while the server was down ends dead, saying why; clocks keep their wall-clock times."""
    server = make_server(store.settings)
    live = server.open_session(name="notebook", idleTimeout="1h")
    server.run(live["id"], "x = 6 * 7")
    doomed = server.open_session()
    before = server.get(f"/sessions/{live['id']}").json()
    record = store.records("interactive")[live["id"]]
    assert record["kind"] == "pyspark" and record["replAddress"] and record["replSecret"]
    # the channel's secret is in the store record (as Livy's rscDriverUri), never in a log, view or metric
    session_log = server.get(f"/sessions/{live['id']}/log", params={"size": -1}).text
    for seen in (server.server_log(), session_log, server.get("/metrics").text, server.get("/sessions").text):
        assert record["replSecret"] not in seen
    assert {"id", "name", "appId", "appTag", "kind", "heartbeatTimeoutS", "owner", "proxyUser", "version"} <= set(record)
    assert [n for n in store.index("interactive") if n.startswith(f"{live['id']}_")]
    assert store.next_session_id("interactive") == doomed["id"] + 1  # v1/interactive/state
    killed_at = time.time()
    server.stop(signal.SIGKILL)
    for proc in drivers_of(server, doomed["id"]):
        proc.kill()

    restarted = make_server(store.settings, port=server.port)
    back = restarted.wait_for(live["id"], {"idle"}, path="/sessions", timeout=30)
    assert back["name"] == "notebook" and back["createdAt"] == live["createdAt"]
    # the idle clock kept its wall-clock time: not restarted by the restart. It is the driver's last activity
    # now (the statement's end, in ms), which may precede by some ms the server's own mark, taken when the
    # driver's answer to the submit arrived (seen 15 ms apart on a loaded machine)
    assert before["lastActivityAt"] - 1 <= back["lastActivityAt"] <= killed_at
    assert back["expiresAt"] == pytest.approx(back["lastActivityAt"] + 3600, abs=0.01)
    assert restarted.get("/sessions/notebook").json()["id"] == live["id"]
    assert restarted.run(live["id"], "x")["output"]["data"]["text/plain"] == "42"
    history = restarted.get(f"/sessions/{live['id']}/statements").json()
    assert [s["code"] for s in history["statements"]] == ["x = 6 * 7", "x"]
    dead = restarted.wait_for(doomed["id"], {"dead"}, path="/sessions", timeout=30)
    assert dead["state"] == "dead"
    log = "\n".join(restarted.get(f"/sessions/{doomed['id']}/log", params={"size": -1}).json()["log"])
    assert "was gone" in log or "ended with exit code" in log
    # ids never go backwards, per family
    assert restarted.open_session()["id"] == doomed["id"] + 1
    assert restarted.delete(f"/sessions/{live['id']}").json() == {"msg": "deleted"}
    assert not drivers_of(restarted, live["id"])


def test_a_driver_exits_when_no_server_reaches_it(make_server: Callable[..., LivyServer]) -> None:
    server = make_server({"livy.rsc.server.idle-timeout": "3s"})
    session = server.open_session()
    assert drivers_of(server, session["id"])
    server.stop(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while drivers_of(server, session["id"]):
        assert time.monotonic() < deadline, "the driver outlived livy.rsc.server.idle-timeout with no server"
        time.sleep(0.2)


def test_shared_and_spark_kinds(fake_server: LivyServer) -> None:
    """A shared session's statements must name their kind (400 naming the choices); any session takes
    per-statement pyspark, spark and sql. Scala needs Spark, which the fake driver lacks: it says so."""
    shared = fake_server.open_session(kind="shared")
    assert shared["kind"] == "shared"
    no_kind = fake_server.post(f"/sessions/{shared['id']}/statements", json={"code": "1 + 1"})
    assert no_kind.status_code == 400
    assert all(kind in no_kind.json()["msg"] for kind in ("pyspark", "spark", "sql"))
    assert fake_server.post(f"/sessions/{shared['id']}/statements", json={"code": "1", "kind": "shared"}).status_code == 400
    assert fake_server.run(shared["id"], "1 + 1", kind="python")["output"]["data"]["text/plain"] == "2"
    scala = fake_server.open_session(kind="scala")
    assert scala["kind"] == "spark"
    output = fake_server.run(scala["id"], "val x = 1")["output"]
    assert (output["status"], output["evalue"]) == ("error", "spark needs Spark (LIVY_REPL_NO_SPARK is set)")
    assert fake_server.run(scala["id"], "21 * 2", kind="pyspark")["output"]["data"]["text/plain"] == "42"


def test_sparkr_says_what_is_missing(fake_server: LivyServer, tmp_path: Path) -> None:
    """A sparkr session needs R and SparkR where the driver runs (this host in client mode): a 400
    names what is missing. pip's pyspark has no SparkR, nor has the fake Spark home. Where R is not
    installed (CI), a one-line Rscript answering "no SparkR" stands in for an R without SparkR."""
    no_r = fake_server.post("/sessions", json={"kind": "sparkr", "conf": {"spark.r.command": str(tmp_path / "no-R")}})
    assert no_r.status_code == 400
    message = no_r.json()["msg"]
    assert "this server's host" in message and "R is not installed" in message
    assert "SparkR R package is not installed" in message and "sparkr.zip" in message

    rscript = shutil.which("Rscript")
    if rscript is None:
        rscript = str(tmp_path / "Rscript")
        Path(rscript).write_text("#!/bin/sh\necho FALSE\n")
        Path(rscript).chmod(0o755)
    no_sparkr = fake_server.post("/sessions", json={"kind": "r", "conf": {"spark.r.command": rscript}})
    assert no_sparkr.status_code == 400
    message = no_sparkr.json()["msg"]
    assert "SparkR R package is not installed" in message and "R's own library" in message
    assert "R is not installed" not in message
    assert fake_server.get("/sessions").json()["total"] == 0

    # A sparkr statement in another session: the driver itself says what its host lacks.
    session = fake_server.open_session(kind="pyspark")
    refused = fake_server.post(f"/sessions/{session['id']}/statements", json={"code": "1 + 1", "kind": "sparkr"})
    assert refused.status_code == 400
    assert "sparkr needs R and the SparkR package on the driver's host" in refused.json()["msg"]
    assert fake_server.run(session["id"], "1 + 1")["output"]["data"]["text/plain"] == "2"
