"""The livy_maintenance DAG run by real Airflow (dag.test) against the real server and a real ZooKeeper.

A dag.test run takes seconds, more on a loaded machine, so whether a record just written is still
younger than min_age when the sweep looks depends on the machine. Each sweep reports the instant
it measured ages against (`swept_at`); the expected outcome is computed from that instant and the
real timestamps (the server's finishedAt, the znodes' mtime), and compared exactly. The exact
boundaries at known ages are pinned in tests/test_maintenance.py.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_livy.maintenance import terminal_since
from airflow_provider_livy.protocol import TERMINAL_STATES
from tests.airflow.conftest import DagOutcome, DagRunner, connection_env
from tests.conftest import LivyServer, free_port
from tests.state_store import ZooKeeperView, livy_record

pytestmark = pytest.mark.zookeeper

DAG_ID = "livy_maintenance"
DAG_FILE = Path(__file__).parents[2] / "dags" / "livy_maintenance.py"
MIN_AGE = 2


@pytest.fixture
def maintenance_dag(dag_runner: DagRunner) -> Path:
    """The shipped DAG file, unchanged, in the session's dags folder."""
    return Path(shutil.copy(DAG_FILE, dag_runner.home / "dags" / "livy_maintenance.py"))


@pytest.fixture
def zk(zookeeper, zk_prefix: str) -> Iterator[ZooKeeperView]:
    view = ZooKeeperView(zookeeper.hosts, zk_prefix)
    yield view
    view.close()


def with_extra(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {key: json.dumps(json.loads(value) | {"extra": extra}) for key, value in env.items()}


def znodes(view: ZooKeeperView) -> dict[str, float]:
    """Every record znode (batch/N, interactive/N) and other child, with its mtime in seconds."""
    found: dict[str, float] = {}
    for directory in ("batch", "interactive"):
        for name in view._children(f"v1/{directory}"):
            found[f"{directory}/{name}"] = view.client.exists(f"/{view.prefix}/v1/{directory}/{name}").mtime / 1000
    return found


def report(outcome: DagOutcome, task_id: str) -> dict[str, Any]:
    task = outcome.task(task_id)
    assert task["state"] == "success", outcome.output[-5000:]
    return task["xcom"]["return_value"]


def expected_rest(views: list[dict[str, Any]], swept_at: float) -> list[str]:
    return sorted(f"batch/{v['id']}" for v in views if v["state"] in TERMINAL_STATES and swept_at - v["finishedAt"] >= MIN_AGE)


def test_dry_run_then_real_run_against_our_server_and_zookeeper(
    make_server, dag_runner: DagRunner, maintenance_dag: Path, zk: ZooKeeperView, job_file: str
) -> None:
    server = make_server({**zk.settings, "livy.server.session.state-retain.sec": "1h"})
    env = with_extra(
        connection_env(server), zookeeper_hosts=zk.settings["livy.server.recovery.state-store.url"], zookeeper_prefix=zk.prefix
    )
    old_ok = server.submit(file=job_file, args=["exit=0"])["id"]
    old_dead = server.submit(file=job_file, args=["exit=1"])["id"]
    running = server.submit(file=job_file, args=["sleep=600"])["id"]
    for batch_id in (old_ok, old_dead):
        server.wait_for(batch_id)
    server.wait_for(running, {"running"})
    zk.write("v1/batch/900", livy_record(900))  # orphaned: no server holds 900
    zk.write("v1/batch/901", b"\x00\x01 not a record")
    zk.write("v1/interactive/state", b'{"nextSessionId": 8}')
    zk.write("v1/interactive/7", livy_record(7))  # our server has no interactive sessions: orphaned
    time.sleep(MIN_AGE)
    fresh = server.submit(file=job_file, args=["exit=0"])["id"]
    server.wait_for(fresh)
    zk.write("v1/batch/902", livy_record(902))  # orphaned, just written
    views = [server.get(f"/batches/{i}").json() for i in (old_ok, old_dead, running, fresh)]
    before, index_before = znodes(zk), zk.index()
    assert {"batch/state", f"batch/{old_ok}", f"batch/{running}", "batch/900"} <= set(before) and index_before

    dry = dag_runner.run(maintenance_dag, DAG_ID, env, conf={"min_age_seconds": MIN_AGE, "dry_run": True})
    assert dry.result is not None and dry.result["state"] == "success", dry.output[-5000:]
    rest, zoo = report(dry, "rest_sweep"), report(dry, "zookeeper_sweep")
    assert server.batch_ids() == [old_ok, old_dead, running, fresh] and znodes(zk) == before, "a dry run deletes nothing"
    assert rest["dry_run"] and rest["deleted_sample"] == expected_rest(views, rest["swept_at"])
    assert {f"batch/{old_ok}", f"batch/{old_dead}"} <= set(rest["deleted_sample"])
    assert rest["kept"]["not finished"] == 1 and rest["scanned"] == 4
    young = ["batch/902"] if zoo["swept_at"] - before["batch/902"] >= MIN_AGE else []
    assert zoo["deleted_sample"] == sorted(["batch/900", "batch/901", "interactive/7", *young])
    assert (
        zoo["kept"]["held by the server"] == 4 and zoo["kept"][next(k for k in zoo["kept"] if k.startswith("not a session"))] == 2
    )
    assert "would delete" in dry.output

    real = dag_runner.run(maintenance_dag, DAG_ID, env, conf={"min_age_seconds": MIN_AGE, "max_sessions_alert": 0})
    rest, zoo = report(real, "rest_sweep"), report(real, "zookeeper_sweep")
    gone_rest = expected_rest(views, rest["swept_at"])
    assert rest["deleted_sample"] == gone_rest and rest["errors"] == 0
    held = [i for i in (old_ok, old_dead, running, fresh) if f"batch/{i}" not in gone_rest]
    assert server.batch_ids() == held and running in held
    young = ["batch/902"] if zoo["swept_at"] - before["batch/902"] >= MIN_AGE else []
    assert zoo["deleted_sample"] == sorted(["batch/900", "batch/901", "interactive/7", *young])
    assert zoo["deleted_by_reason"]["unparseable record"] == 1
    left = set(znodes(zk))
    assert left == {"batch/state", "interactive/state", *(f"batch/{i}" for i in held), *({"batch/902"} - set(young))}
    assert set(zk.index()) <= set(index_before) and all(any(n.startswith(f"{i}_") for n in zk.index()) for i in held)
    check = real.task("check")
    assert check["state"] == "failed" and real.result["state"] == "failed"
    assert f"still holds {len(held)} sessions after the sweep, more than max_sessions_alert=0" in real.output


def test_server_down_deletes_only_the_unambiguous(dag_runner: DagRunner, maintenance_dag: Path, zk: ZooKeeperView) -> None:
    hosts = zk.settings["livy.server.recovery.state-store.url"]
    env = {"AIRFLOW_CONN_LIVY_DOWN": json.dumps({"conn_type": "livy_batch", "host": "127.0.0.1", "port": free_port()})}
    now = time.time()
    ours = json.loads(livy_record(0)) | {"createdAt": now - 3600}
    zk.write("v1/batch/state", b'{"nextSessionId": 20}')
    zk.write("v1/batch/10", json.dumps(ours | {"id": 10, "state": "success", "finishedAt": now - 7200}).encode())
    zk.write("v1/batch/11", json.dumps(ours | {"id": 11, "state": "running", "finishedAt": None}).encode())
    zk.write("v1/batch/12", livy_record(12))  # Apache Livy's record: only its age can tell
    zk.write("v1/batch/13", b"{truncated")
    time.sleep(MIN_AGE)
    zk.write("v1/batch/14", json.dumps(ours | {"id": 14, "state": "dead", "finishedAt": time.time()}).encode())
    zk.write("v1/batch/15", livy_record(15))
    before = znodes(zk)
    conf = {
        "livy_conn_id": "livy_down",
        "zookeeper_hosts": hosts,
        "zookeeper_prefix": zk.prefix,
        "min_age_seconds": 3600,
        "untouched_seconds": MIN_AGE,
    }

    outcome = dag_runner.run(maintenance_dag, DAG_ID, env, conf=conf)
    rest, zoo = report(outcome, "rest_sweep"), report(outcome, "zookeeper_sweep")
    assert rest["errors"] == 1 and "listing batches failed" in rest["error_messages"][0] and rest["scanned"] == 0
    untouched = sorted(f"batch/{n}" for n in (12, 14, 15) if zoo["swept_at"] - before[f"batch/{n}"] > MIN_AGE)
    assert "batch/12" in untouched
    assert zoo["deleted_sample"] == sorted(["batch/10", "batch/13", *untouched])
    assert zoo["deleted_by_reason"] == {
        "record says terminal and expired (server unreachable)": 1,
        "unparseable record": 1,
        "untouched longer than untouched_seconds (server unreachable)": len(untouched),
    }
    assert zoo["kept"]["record says active (server unreachable)"] == 1, "a running batch is never swept"
    assert set(znodes(zk)) == {"batch/state", "batch/11", *({"batch/14", "batch/15"} - set(untouched))}
    assert outcome.task("check")["state"] == "failed"
    assert "rest sweep: 1 error(s): listing batches failed" in outcome.output


class _LivyLikeProxy(BaseHTTPRequestHandler):
    """Forwards to our server and strips the timestamps from its views: sessions as Apache Livy shows them."""

    upstream = ""
    STRIP = ("createdAt", "finishedAt", "expiresAt", "lastActivityAt")

    def _forward(self) -> None:
        answer = requests.request(self.command, self.upstream + self.path, headers={"X-Requested-By": "proxy"}, timeout=30)
        body = answer.content
        if answer.headers.get("content-type", "").startswith("application/json"):
            data = answer.json()
            for view in data.get("sessions", [data]) if isinstance(data, dict) else []:
                for key in self.STRIP:
                    view.pop(key, None)
            body = json.dumps(data).encode()
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_DELETE = _forward

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture
def livy_like(fake_server: LivyServer) -> Iterator[tuple[LivyServer, int]]:
    handler = type("Proxy", (_LivyLikeProxy,), {"upstream": fake_server.url})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield fake_server, proxy.server_address[1]
    proxy.shutdown()
    proxy.server_close()


def test_without_timestamps_the_age_is_remembered_between_runs(
    dag_runner: DagRunner, maintenance_dag: Path, livy_like: tuple[LivyServer, int], job_file: str
) -> None:
    from airflow.models.variable import Variable

    server, port = livy_like
    conn_id = "livy_like"
    env = {"AIRFLOW_CONN_LIVY_LIKE": json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": port})}
    done = [server.submit(file=job_file, args=["exit=0"])["id"], server.submit(file=job_file, args=["exit=1"])["id"]]
    vanishing = server.submit(file=job_file, args=["exit=0"])["id"]
    running = server.submit(file=job_file, args=["sleep=600"])["id"]
    for batch_id in (*done, vanishing):
        server.wait_for(batch_id)
    server.wait_for(running, {"running"})
    assert "finishedAt" not in requests.get(f"http://127.0.0.1:{port}/batches/{done[0]}", timeout=10).json()
    time.sleep(MIN_AGE)  # finished long enough ago by the server's clock, but a Livy view cannot say so
    conf = {"livy_conn_id": conn_id, "min_age_seconds": MIN_AGE}

    first = dag_runner.run(maintenance_dag, DAG_ID, env, conf=conf)
    rest = report(first, "rest_sweep")
    assert rest["deleted"] == 0 and rest["kept"] == {"finished less than min_age ago": 3, "not finished": 1}
    record = terminal_since.parse(Variable.get(terminal_since.variable_key(conn_id)))
    assert sorted(record) == sorted(f"batch:{i}" for i in (*done, vanishing))
    assert all(since == rest["swept_at"] for since, _ in record.values())
    assert server.delete(f"/batches/{vanishing}").status_code == 200  # a client cleans up after itself
    assert first.result is not None and first.result["state"] == "success"
    assert report(first, "zookeeper_sweep")["skipped"].startswith("no ZooKeeper hosts"), "this connection names none"
    time.sleep(max(0.0, rest["swept_at"] + MIN_AGE - time.time()))  # a warm worker can start the next run at once

    second = dag_runner.run(maintenance_dag, DAG_ID, env, conf=conf)
    rest = report(second, "rest_sweep")
    assert rest["swept_at"] - min(since for since, _ in record.values()) >= MIN_AGE
    assert rest["deleted_sample"] == sorted(f"batch/{i}" for i in done) and rest["kept"] == {"not finished": 1}
    assert server.batch_ids() == [running]
    assert terminal_since.parse(Variable.get(terminal_since.variable_key(conn_id))) == {}, "deleted and vanished ids are pruned"


MAX_IDLE = 3


def start_idle_and_busy(server: LivyServer) -> tuple[int, int]:
    """Two interactive sessions (the fake spark-submit runs the real REPL as plain Python): one left
    idle, one running a long statement."""
    idle, busy = (server.post("/sessions", json={"kind": "pyspark"}).json()["id"] for _ in range(2))
    for session_id in (idle, busy):
        wait_for_state(server, session_id, "idle")
    assert server.post(f"/sessions/{busy}/statements", json={"code": "import time; time.sleep(600)"}).status_code == 201
    wait_for_state(server, busy, "busy")
    return idle, busy


def wait_for_state(server: LivyServer, session_id: int, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while server.get(f"/sessions/{session_id}/state").json()["state"] != state:
        assert time.monotonic() < deadline, f"session {session_id} never became {state}"
        time.sleep(0.1)


def session_ids(server: LivyServer) -> list[int]:
    return [s["id"] for s in server.get("/sessions").json()["sessions"]]


def test_idle_sessions_past_max_idle_end_on_our_server_and_zookeeper_loses_their_records(
    make_server, dag_runner: DagRunner, maintenance_dag: Path, zk: ZooKeeperView
) -> None:
    server = make_server(zk.settings)
    env = with_extra(
        connection_env(server), zookeeper_hosts=zk.settings["livy.server.recovery.state-store.url"], zookeeper_prefix=zk.prefix
    )
    idle, busy = start_idle_and_busy(server)
    zk.write("v1/interactive/900", livy_record(900))  # a session record no server holds
    time.sleep(max(MAX_IDLE, MIN_AGE))
    assert {f"interactive/{idle}", f"interactive/{busy}"} <= set(znodes(zk)), "our server records its sessions"

    outcome = dag_runner.run(maintenance_dag, DAG_ID, env, conf={"min_age_seconds": MIN_AGE, "max_idle_seconds": MAX_IDLE})
    rest, zoo = report(outcome, "rest_sweep"), report(outcome, "zookeeper_sweep")
    assert rest["deleted_sample"] == [f"session/{idle}"] and rest["idle_ended"] == 1
    assert rest["sessions_by_kind"] == {"pyspark": 2} and rest["idle_over_day"] == 0
    assert session_ids(server) == [busy], "a busy session is never touched, however long it has been busy"
    assert server.get(f"/sessions/{busy}/state").json()["state"] == "busy"
    assert "interactive/900" in zoo["deleted_sample"] and f"interactive/{busy}" not in zoo["deleted_sample"]
    left = set(znodes(zk))
    assert f"interactive/{busy}" in left and "interactive/900" not in left and f"interactive/{idle}" not in left
    assert outcome.result is not None and outcome.result["state"] == "success", outcome.output[-3000:]
    assert "interactive sessions by kind: {'pyspark': 2}; idle ones ended: 1" in outcome.output


def test_without_timestamps_idleness_is_timed_from_the_first_sweep_that_saw_it(
    dag_runner: DagRunner, maintenance_dag: Path, livy_like: tuple[LivyServer, int]
) -> None:
    from airflow.models.variable import Variable

    server, port = livy_like
    conn_id = "livy_like_sessions"
    env = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps({"conn_type": "livy", "host": "127.0.0.1", "port": port})}
    idle, busy = start_idle_and_busy(server)
    assert "lastActivityAt" not in requests.get(f"http://127.0.0.1:{port}/sessions/{idle}", timeout=10).json()
    time.sleep(MAX_IDLE)  # idle long enough by the server's clock, but a Livy view cannot say so
    conf = {"livy_conn_id": conn_id, "max_idle_seconds": MAX_IDLE}

    first = dag_runner.run(maintenance_dag, DAG_ID, env, conf=conf)
    rest = report(first, "rest_sweep")
    assert rest["deleted"] == 0 and rest["kept"] == {"not finished": 2}
    record = terminal_since.parse(Variable.get(terminal_since.variable_key(conn_id)))
    assert list(record) == [f"session:{idle}:idle"] and record[f"session:{idle}:idle"][0] == rest["swept_at"]
    time.sleep(MAX_IDLE)

    second = dag_runner.run(maintenance_dag, DAG_ID, env, conf=conf)
    rest = report(second, "rest_sweep")
    assert rest["deleted_sample"] == [f"session/{idle}"] and rest["kept"] == {"not finished": 1}
    assert session_ids(server) == [busy]
    assert terminal_since.parse(Variable.get(terminal_since.variable_key(conn_id))) == {}, "an ended session is pruned"
