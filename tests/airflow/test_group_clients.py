"""Our hooks and operators against a group of real servers on a real ZooKeeper (recovery mode ha), fake
spark-submit: a connection that lists several servers moves past a refused one, a standby and a killed leader.

One pair (a leader and a standby) is shared by the tests that kill nothing; a failover test starts its own.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from airflow_provider_livy.hooks.connection import (
    LivyError,
    base_urls,
    current_server,
    next_server,
    next_try,
    reattach_by_name,
)
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.triggers.livy import LivyBatchTrigger
from tests.airflow.conftest import DagRunner
from tests.airflow.test_maintenance_dag import DAG_ID, MIN_AGE, maintenance_dag, report  # noqa: F401 (a fixture)
from tests.conftest import FAKE_SPARK_HOME, LivyServer, free_port, kill_drivers, start_server
from tests.test_group import SESSION_TIMEOUT, group, ha_settings, wait_leading, zk_view  # noqa: F401 (fixtures)

pytestmark = pytest.mark.zookeeper


@pytest.fixture(scope="module")
def pair(zookeeper, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LivyServer, LivyServer, Path]]:
    """A leader and a standby of one group, and their whitelisted directory."""
    work_dir = tmp_path_factory.mktemp("group")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    servers: list[LivyServer] = []
    for _ in range(2):
        port = free_port()
        settings = {"livy.server.spark-home": str(FAKE_SPARK_HOME), **ha_settings(zookeeper.hosts, prefix, port)}
        servers.append(start_server(work_dir, settings, port=port))
        wait_leading(servers[0], 30)
    yield servers[0], servers[1], work_dir
    for server in servers:
        server.stop()
    kill_drivers(work_dir)


def group_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, *ports: int) -> str:
    """A connection whose host lists the servers of `ports` (the first with the connection's port as default)."""
    host = ",".join(["127.0.0.1"] + [f"127.0.0.1:{port}" for port in ports[1:]])
    conn = {"conn_type": "livy_batch", "host": host, "port": ports[0]}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return host


def test_a_host_lists_servers_each_with_an_optional_port() -> None:
    assert base_urls("a,b:8999, c", 9000, None, "gw") == ("http://a:9000/gw", "http://b:8999/gw", "http://c:9000/gw")
    assert base_urls("https://x/livy,y", None, None, None) == ("https://x/livy", "http://y:8998")


def test_the_server_choice_remembers_the_leader_and_moves_on_past_the_others() -> None:
    servers = (f"http://one-{uuid.uuid4().hex}", "http://two", "http://three")
    assert current_server(servers) == servers[0]
    assert next_server(servers, servers[0], None) == servers[1]  # no answer: the next
    assert next_server(servers, servers[1], 503) == servers[2]  # no leader there: the next
    assert next_server(servers, servers[2], 307) == servers[0]  # a redirect: the next, round again
    assert current_server(servers) == servers[0]  # nothing answered yet as the leader
    assert next_server(servers, servers[2], 404) == servers[2]  # an answer is the leader's (a standby proxies)
    assert current_server(servers) == servers[2]
    # a refused connection or a 307 moves on at once while the round has servers left; then the retry rule waits
    assert next_try("POST", 0, 5, servers, never_sent=True) == 0.0
    assert next_try("POST", 2, 5, servers, never_sent=True) == 2.0
    assert next_try("POST", 0, 5, servers, status=307) == 0.0
    assert next_try("POST", 0, 5, servers[:1], status=307) is None
    assert next_try("POST", 0, 5, servers) is None  # a POST that may have been sent is not repeated blindly
    assert next_try("GET", 5, 5, servers, never_sent=True) is None


def test_a_create_that_may_have_reached_a_server_is_looked_up_by_its_name() -> None:
    maybe = LivyError("timed out")
    assert reattach_by_name("POST", {"name": "dag-task-1"}, maybe) == "dag-task-1"
    assert reattach_by_name("POST", {"name": "dag-task-1"}, LivyError("bad gateway", 502)) == "dag-task-1"
    assert reattach_by_name("POST", {"name": "dag-task-1"}, LivyError("refused", 400)) is None
    assert reattach_by_name("POST", {"file": "/j.py"}, maybe) is None  # no name: not sent again
    assert reattach_by_name("GET", {"name": "x"}, maybe) is None


def test_hooks_move_past_a_refused_server_to_the_live_one(pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first server of the connection is a port nothing listens on (a stopped server's); the second leads."""
    leader, standby, work_dir = pair
    job = work_dir / "job.py"
    job.write_text("print('fake job')\n")
    stopped = free_port()
    group_connection(monkeypatch, "two_hosts", stopped, leader.port)
    slept: list[float] = []
    hook = LivyHook("two_hosts", sleep=slept.append)
    view = hook.submit_batch({"file": str(job), "args": ["sleep=0"], "name": f"refused-first-{uuid.uuid4().hex[:8]}"})
    assert hook.poll_batch_state(view["id"], wait=10) in ("running", "success")
    assert slept == [0.0]  # the refused server was passed once, at once, and then not asked again
    assert current_server(hook.settings.base_urls) == leader.url
    assert leader.wait_for(view["id"])["state"] == "success"

    async def through_async() -> tuple[str, bool]:
        group_connection(monkeypatch, "async_two_hosts", stopped, standby.port)  # the standby proxies
        hook = LivyAsyncHook("async_two_hosts")
        try:
            return await hook.poll_batch_state(view["id"]), await hook.discard_batch(view["id"])
        finally:
            await hook.aclose()

    assert asyncio.run(through_async()) == ("success", True)
    assert leader.get(f"/batches/{view['id']}").status_code == 404
    group_connection(monkeypatch, "test_button", stopped, standby.port)
    ok, message = LivyHook("test_button").test_connection()  # the Test button: each server once
    assert ok and message.startswith(f"Connected to {standby.url}: the server holds "), message


def test_a_batch_task_survives_a_kill_9_of_the_leader(group, dag_runner: DagRunner, job_file: str, monkeypatch) -> None:  # noqa: F811
    """dag.test runs a waiting LivyBatchOperator through a two-server connection; the leader is killed -9 while
    the batch runs. The other takes over, the task follows the batch to its end, succeeds and deletes it; a batch
    trigger waiting on another batch through the same servers fires its one event, success."""
    first = group()
    wait_leading(first, 30)
    second = group()
    dag = dag_runner.write_dag(
        "livy_failover",
        'LivyBatchOperator(task_id="spark", file={job!r}, args=["lines=3", "sleep=6"], polling_interval=1, dag=dag)\n',
        job=job_file,
    )
    host = ",".join(f"127.0.0.1:{server.port}" for server in (first, second))
    env = {"AIRFLOW_CONN_LIVY_DEFAULT": json.dumps({"conn_type": "livy_batch", "host": host})}
    run = dag_runner.start(dag, "livy_failover", env)
    line = run.wait_for_output(" created (", timeout=120)
    batch_id = int(re.search(r"Livy batch (\d+) created", line).group(1))
    assert second.wait_for(batch_id, {"running"}, timeout=60)["state"] == "running"
    deferred = first.submit(file=job_file, args=["sleep=6"])["id"]  # and a trigger waits on another, meanwhile
    first.wait_for(deferred, {"running"})  # launched: one killed with its server before the spawn would end dead
    monkeypatch.setenv("AIRFLOW_CONN_FAILOVER_TRIGGER", env["AIRFLOW_CONN_LIVY_DEFAULT"])
    events: list[dict] = []

    async def first_event() -> None:
        async for event in LivyBatchTrigger(deferred, livy_conn_id="failover_trigger", polling_interval=1).run():
            events.append(event.payload)
            return

    waiting = threading.Thread(target=asyncio.run, args=(first_event(),))
    waiting.start()
    first.stop(signal.SIGKILL)
    wait_leading(second, SESSION_TIMEOUT + 30)
    outcome = run.outcome(timeout=180)
    waiting.join(120)
    assert [(e["status"], e["state"]) for e in events] == [("finished", "success")], events
    assert second.delete(f"/batches/{deferred}").status_code == 200
    assert outcome.task("spark")["state"] == "success", outcome.output[-5000:]
    assert f"Livy GET http://127.0.0.1:{first.port}/batches/{batch_id}" in outcome.output  # it did lose the leader
    assert "driver line 2" in outcome.output  # the driver's log kept streaming into the task log
    assert f"Deleted Livy batch {batch_id}" in outcome.output, outcome.output[-3000:]
    assert second.batch_ids() == []  # the task deleted its batch, and no second one was created


def test_the_maintenance_dags_rest_sweep_through_a_standby(pair, dag_runner: DagRunner, maintenance_dag: Path) -> None:  # noqa: F811
    """The shipped DAG, its connection naming only the standby: the sweep lists and deletes through its proxy."""
    leader, standby, work_dir = pair
    job = work_dir / "sweep_job.py"
    job.write_text("print('fake job')\n")
    done = [leader.submit(file=str(job), args=[f"exit={code}"])["id"] for code in (0, 1)]
    running = leader.submit(file=str(job), args=["sleep=600"])["id"]
    for batch_id in done:
        leader.wait_for(batch_id)
    leader.wait_for(running, {"running"})
    time.sleep(MIN_AGE)
    env = {"AIRFLOW_CONN_LIVY_STANDBY": json.dumps({"conn_type": "livy_batch", "host": "127.0.0.1", "port": standby.port})}
    outcome = dag_runner.run(maintenance_dag, DAG_ID, env, conf={"livy_conn_id": "livy_standby", "min_age_seconds": MIN_AGE})
    rest = report(outcome, "rest_sweep")
    assert rest["errors"] == 0 and {f"batch/{i}" for i in done} <= set(rest["deleted_sample"]), rest
    assert rest["kept"].get("not finished") == 1, rest
    assert running in leader.batch_ids() and not set(done) & set(leader.batch_ids())
    assert standby.delete(f"/batches/{running}").status_code == 200


class _InFront(BaseHTTPRequestHandler):
    """What our servers never do (they proxy), in front of the leader: a 307 to it, or a dropped connection
    after the request came, with or without having passed the request on (a crashed proxy or gateway)."""

    leader = ""
    mode = "redirect"  # or "drop", "forward-then-drop"
    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.mode == "redirect":
            self.send_response(307)
            self.send_header("Location", self.leader + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.mode == "forward-then-drop":
            headers = {"Content-Type": "application/json", "X-Requested-By": "tests"}
            requests.request(self.command, self.leader + self.path, data=body, headers=headers, timeout=30)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def in_front(pair) -> Iterator[type[_InFront]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _InFront)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _InFront.leader, _InFront.seen, _InFront.port = pair[0].url, [], httpd.server_address[1]
    yield _InFront
    httpd.shutdown()


@pytest.mark.parametrize("mode", ["redirect", "drop", "forward-then-drop"])
def test_a_create_is_made_once_past_a_redirect_or_a_dropped_connection(
    pair, in_front: type[_InFront], mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection's first server answers 307, or drops the POST (having passed it on to the leader, or not):
    the hook moves on to the leader, looks the batch up by its name where it may exist, and there is one."""
    leader, _standby, work_dir = pair
    in_front.mode = mode
    job = work_dir / "job.py"
    job.write_text("print('fake job')\n")
    group_connection(monkeypatch, f"in_front_{mode.replace('-', '_')}", in_front.port, leader.port)
    hook = LivyHook(f"in_front_{mode.replace('-', '_')}", sleep=lambda _s: None)
    name = f"once-{mode}-{uuid.uuid4().hex[:8]}"
    view = hook.submit_batch({"file": str(job), "args": ["sleep=0"], "name": name})
    assert in_front.seen == ["POST /batches"]  # asked once, then never again
    assert [b["id"] for b in hook.list_batches() if b["name"] == name] == [view["id"]]  # one batch of the name
    assert hook.discard_batch(view["id"])


def test_a_deferred_batch_task_survives_a_kill_9_of_the_leader(group, zk_view, dag_runner: DagRunner, job_file: str) -> None:  # noqa: F811
    """dag.test runs a deferrable LivyBatchOperator through a two-server connection; its trigger runs in the
    process (as dag.test runs triggers) and the leader is killed -9 while the task is deferred. The trigger
    follows the batch on the new leader to its end; the task ends as without a failover: success, the driver's
    lines in its log, its batch deleted, and no record of it left in ZooKeeper nor on the new leader."""
    first = group()
    wait_leading(first, 30)
    second = group()
    dag = dag_runner.write_dag(
        "livy_deferred_failover",
        'LivyBatchOperator(task_id="spark", file={job!r}, args=["lines=3", "sleep=8"], deferrable=True, polling_interval=1,'
        " dag=dag)\n",
        job=job_file,
    )
    host = ",".join(f"127.0.0.1:{server.port}" for server in (first, second))
    env = {"AIRFLOW_CONN_LIVY_DEFAULT": json.dumps({"conn_type": "livy_batch", "host": host})}
    run = dag_runner.start(dag, "livy_deferred_failover", env)
    line = run.wait_for_output(" created (", timeout=120)
    batch_id = int(re.search(r"Livy batch (\d+) created", line).group(1))
    run.wait_for_output("running trigger in line", timeout=60)  # deferred: the trigger waits on the batch
    assert first.wait_for(batch_id, {"running"}, timeout=60)["state"] == "running"
    assert batch_id in zk_view.records()
    first.stop(signal.SIGKILL)
    wait_leading(second, SESSION_TIMEOUT + 30)
    outcome = run.outcome(timeout=180)
    out = outcome.output
    assert outcome.task("spark")["state"] == "success", out[-5000:]
    assert outcome.task("spark")["try_number"] == 1  # no retry: the deferred wait itself went on
    assert "Trigger completed" in out and out.count(f"Livy batch {batch_id} created") == 1
    lost = f"Livy GET http://127.0.0.1:{first.port}/batches/{batch_id}/"  # the trigger's call to the dead leader
    assert any(lost in line and "retry 1 of" in line for line in out.splitlines()), out[-5000:]
    assert f"[livy batch {batch_id}] driver line 2" in out  # the trigger's log lines, carried into the task log
    assert f"Deleted Livy batch {batch_id} because it succeeded" in out, out[-3000:]
    assert second.batch_ids() == [] and zk_view.records() == {}  # deleted on the new leader, and in ZooKeeper
