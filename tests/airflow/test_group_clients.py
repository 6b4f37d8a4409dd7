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
from typing import Any

import pytest
import requests

from airflow_provider_livy.hooks.connection import (
    LivyError,
    Tries,
    base_urls,
    current_server,
    next_server,
    next_try,
    reattach_by_name,
)
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.maintenance.tasks import server_ids
from airflow_provider_livy.maintenance.zookeeper_sweep import (
    KEEP_GROUP_UNASKED,
    KEEP_HELD,
    KEEP_NOT_RECORD,
    KEEP_TAKEOVER,
    Rules,
    sweep_zookeeper,
)
from airflow_provider_livy.server.stores.index import entry_name
from airflow_provider_livy.triggers.livy import LivyBatchTrigger
from tests.airflow.conftest import DagProcess, DagRunner, wait_until
from tests.airflow.test_maintenance_dag import (  # noqa: F401 (maintenance_dag is a fixture)
    DAG_ID,
    MAX_IDLE,
    MIN_AGE,
    maintenance_dag,
    report,
    session_ids,
    start_idle_and_busy,
)
from tests.conftest import FAKE_SPARK_HOME, LivyServer, free_port, kill_drivers, start_server
from tests.state_store import livy_record
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
    refused = Tries()
    assert [next_try("POST", refused, 5, servers, never_sent=True) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert next_try("POST", Tries(), 5, servers, status=307) == 0.0
    assert next_try("POST", Tries(), 5, servers[:1], status=307) is None
    assert next_try("POST", Tries(), 5, servers) is None  # a POST that may have been sent is not repeated blindly
    assert next_try("GET", Tries(counted=5), 5, servers, status=500) is None


def test_a_call_waits_out_a_group_with_no_leader_for_a_time_not_a_count() -> None:
    """A failover takes the session timeout + 2 s: the dead leader refuses, the standby answers 503 until it leads.
    Those answers do not use up the hook's retries; failover_wait bounds them. Anything else still counts."""
    servers = ("http://dead", "http://standby")
    tries, waits = Tries(), []
    for _ in range(20):  # 20 rounds: far more than the 5 retries
        waits.append(next_try("GET", tries, 5, servers, never_sent=True))
        waits.append(next_try("GET", tries, 5, servers, status=503, retry_after="1"))
    assert waits == [0.0, 1.0] * 20 and tries.counted == 0
    assert "waiting for the group to have a leader" in tries.note(5, 60)
    assert next_try("GET", tries, 5, servers, status=502) == 0.5  # a gateway's 502 after it: retried, counted once
    assert tries.note(5, 60) == "retry 1 of 5"
    expired = Tries(leaderless_since=time.monotonic() - 61)
    assert next_try("GET", expired, 5, servers, status=503, retry_after="1") == 1.0  # then the retries' own budget
    assert next_try("GET", Tries(counted=5, leaderless_since=time.monotonic() - 61), 5, servers, status=503) is None
    assert next_try("GET", Tries(), 5, servers, status=503, failover_wait=0) == 0.5  # the Test button waits for none


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


def leader_and_standby(start_member: Any) -> tuple[LivyServer, LivyServer, dict[str, str]]:
    """A leader and a standby of `start_member` (the group fixture), and livy_default listing both, as Airflow
    reads it from the environment."""
    first = start_member()
    wait_leading(first, 30)
    second = start_member()
    host = ",".join(f"127.0.0.1:{server.port}" for server in (first, second))
    return first, second, {"AIRFLOW_CONN_LIVY_DEFAULT": json.dumps({"conn_type": "livy_batch", "host": host})}


def batch_task_on_a_pair(
    start_member: Any, dag_runner: DagRunner, dag_id: str, job_file: str, sleep: str, options: str = ""
) -> tuple[LivyServer, LivyServer, DagProcess, int, dict[str, str]]:
    """`leader_and_standby`, and a DAG run (a process of its own) of a batch task through their connection, once the
    batch is created: the servers, the run, the batch id and the connection's environment."""
    first, second, env = leader_and_standby(start_member)
    arguments = f'task_id="spark", file={{job!r}}, args=["lines=3", "{sleep}"], {options}polling_interval=1, dag=dag'
    dag = dag_runner.write_dag(dag_id, f"LivyBatchOperator({arguments})\n", job=job_file)
    run = dag_runner.start(dag, dag_id, env)
    line = run.wait_for_output(" created (", timeout=120)
    return first, second, run, int(re.search(r"Livy batch (\d+) created", line).group(1)), env


def test_a_batch_task_survives_a_kill_9_of_the_leader(group, dag_runner: DagRunner, job_file: str, monkeypatch) -> None:  # noqa: F811
    """dag.test runs a waiting LivyBatchOperator through a two-server connection; the leader is killed -9 while
    the batch runs. The other takes over, the task follows the batch to its end, succeeds and deletes it; a batch
    trigger waiting on another batch through the same servers fires its one event, success."""
    first, second, run, batch_id, env = batch_task_on_a_pair(group, dag_runner, "livy_failover", job_file, "sleep=6")
    assert second.wait_for(batch_id, {"running"}, timeout=60)["state"] == "running"
    deferred = first.submit(file=job_file, args=["sleep=6"])["id"]  # and a trigger waits on another, meanwhile
    first.wait_for(deferred, {"running"})  # running, so the trigger sees it run on either server
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
    first, second, run, batch_id, _env = batch_task_on_a_pair(
        group, dag_runner, "livy_deferred_failover", job_file, "sleep=8", "deferrable=True, "
    )
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
    assert any(lost in line and "retry 1" in line for line in out.splitlines()), out[-5000:]
    assert f"[livy batch {batch_id}] driver line 2" in out  # the trigger's log lines, carried into the task log
    assert f"Deleted Livy batch {batch_id} because it succeeded" in out, out[-3000:]
    assert second.batch_ids() == [] and zk_view.records() == {}  # deleted on the new leader, and in ZooKeeper


def test_reschedule_pokes_start_from_the_server_the_last_poke_found(pair, dag_runner: DagRunner) -> None:
    """A reschedule-mode sensor through a connection whose first server is dead: only the first poke asks it.
    The later ones, each a run of its own, start from the leader the poke before found, kept in the task's state
    store. In a deployment each poke runs in a new process; dag.test runs them all in its own, so the sensor of
    this DAG forgets what the process learned before each poke."""
    leader, _standby, work_dir = pair
    job = work_dir / "sensed_job.py"
    job.write_text("print('fake job')\n")
    dead = free_port()
    dag = dag_runner.write_dag(
        "livy_reschedule_group",
        """
        from airflow_provider_livy.hooks import connection

        class EachPokeInANewProcess(LivyBatchSensor):
            def poke(self, context):
                connection._current.clear()
                return super().poke(context)

        submit = LivyBatchOperator(task_id="submit", file={job!r}, args=["sleep=5"], wait_for_completion=False,
                                   livy_conn_id="livy_group", dag=dag)
        submit >> EachPokeInANewProcess(task_id="sense", batch_id="{{{{ ti.xcom_pull('submit') }}}}",
                                        livy_conn_id="livy_group", mode="reschedule", poke_interval=1,
                                        delete_batch=True, dag=dag)
        """,
        job=str(job),
    )
    conn = {"conn_type": "livy_batch", "host": f"127.0.0.1:{dead},127.0.0.1:{leader.port}"}
    outcome = dag_runner.run(dag, "livy_reschedule_group", {"AIRFLOW_CONN_LIVY_GROUP": json.dumps(conn)})
    out = outcome.output
    assert outcome.task("sense")["state"] == "success", out[-5000:]
    batch_id = outcome.task("submit")["xcom"]["batch_id"]
    assert out.count(f"Livy batch {batch_id} is running") >= 2, out[-5000:]  # pokes, each a run of its own
    assert f"Livy batch {batch_id} is success" in out
    dead_calls = [line for line in out.splitlines() if f"127.0.0.1:{dead}/batches/{batch_id}/state failed" in line]
    assert len(dead_calls) == 1, dead_calls  # the first poke's; the others started from the leader
    assert batch_id not in leader.batch_ids()


def test_a_trigger_starts_from_the_server_its_task_found(pair, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """A deferring task hands its trigger the server its hook found answering: the trigger, in the triggerer's
    process, asks no dead server before it; one without that hint asks the dead first server first."""
    leader, _standby, work_dir = pair
    job = work_dir / "triggered_job.py"
    job.write_text("print('fake job')\n")
    batch_id = leader.submit(file=str(job), args=["sleep=0"])["id"]
    leader.wait_for(batch_id)

    def first_event(leader_url: str | None) -> tuple[dict, list[str]]:
        dead = free_port()  # a connection of its own: no server of it asked yet in this process
        group_connection(monkeypatch, "trigger_hint", dead, leader.port)
        capsys.readouterr()
        trigger = LivyBatchTrigger(batch_id, "trigger_hint", 1, stream_logs=False, leader=leader_url)
        _classpath, kwargs = trigger.serialize()
        stored = LivyBatchTrigger(**json.loads(json.dumps(kwargs)))  # as the triggerer builds it

        async def run() -> dict:
            async for event in stored.run():
                return event.payload
            raise AssertionError("no event")

        payload = asyncio.run(run())
        logged = capsys.readouterr()  # Airflow's logging writes the trigger's lines to the console
        return payload, [line for line in (logged.out + logged.err).splitlines() if f"127.0.0.1:{dead}" in line]

    hinted, asked_dead = first_event(leader.url)
    assert (hinted["status"], hinted["state"], asked_dead) == ("finished", "success", [])
    unhinted, asked_dead = first_event(None)
    assert unhinted["state"] == "success" and len(asked_dead) == 1, asked_dead
    assert leader.delete(f"/batches/{batch_id}").status_code == 200


RETAINED = {"livy.server.session.state-retain.sec": "1h"}  # finished records stay until the sweep removes them


def test_the_maintenance_dag_sweeps_a_group_through_its_leader_and_nothing_it_removed_comes_back(
    group, zk_view, zookeeper, dag_runner: DagRunner, maintenance_dag: Path, job_file: str  # noqa: F811
) -> None:
    """The shipped DAG against a group of two, its connection listing a dead server, then the standby, then the
    leader. The REST sweep deletes finished batches and a long-idle session through the leader; the ZooKeeper sweep
    of the group's prefix removes the orphans no server holds, fenced by the group's epoch, and keeps every record
    the leader holds. After a kill -9 of the leader the other serves exactly what was kept: nothing removed came
    back, though a new leader recovers every record it finds."""
    first = group(**RETAINED)
    wait_leading(first, 30)
    second = group(**RETAINED)
    finished = [first.submit(file=job_file, args=[f"exit={code}"])["id"] for code in (0, 1)]
    running = first.submit(file=job_file, args=["sleep=600"])["id"]
    for batch_id in finished:
        first.wait_for(batch_id)
    first.wait_for(running, {"running"})
    idle, busy = start_idle_and_busy(first)
    zk_view.write("v1/batch/900", livy_record(900))  # orphans: written after the leader took over, held by nobody
    zk_view.write("v1/interactive/901", livy_record(901))
    time.sleep(max(MIN_AGE, MAX_IDLE))
    epoch = requests.get(first.url + "/ready", timeout=5).json()["epoch"]
    host = ",".join(f"127.0.0.1:{port}" for port in (free_port(), second.port, first.port))
    extra = {"zookeeper_hosts": zookeeper.hosts, "zookeeper_prefix": zk_view.prefix}
    conn = {"conn_type": "livy_batch", "host": host, "extra": extra}
    env = {"AIRFLOW_CONN_LIVY_GROUP": json.dumps(conn)}
    conf = {"livy_conn_id": "livy_group", "min_age_seconds": MIN_AGE, "max_idle_seconds": MAX_IDLE}
    outcome = dag_runner.run(maintenance_dag, DAG_ID, env, conf=conf)
    assert outcome.task("check")["state"] == "success", outcome.output[-5000:]
    rest, zoo = report(outcome, "rest_sweep"), report(outcome, "zookeeper_sweep")
    assert rest["deleted_sample"] == sorted([*(f"batch/{i}" for i in finished), f"session/{idle}"]), rest
    assert rest["errors"] == 0 and rest["kept"] == {"not finished": 2}, rest
    assert zoo["group_epoch"] == epoch and zoo["errors"] == 0, zoo
    assert zoo["deleted_sample"] == ["batch/900", "interactive/901"], zoo
    assert zoo["kept"][KEEP_HELD] == 2, zoo  # the running batch and the busy session
    kept = ({"batch": [running], "interactive": [busy]}, [running], [busy])
    assert ({f: sorted(zk_view.records(f)) for f in ("batch", "interactive")}, first.batch_ids(), session_ids(first)) == kept

    first.stop(signal.SIGKILL)
    wait_leading(second, SESSION_TIMEOUT + 30)
    assert second.wait_for(busy, {"busy"}, timeout=60, path="/sessions")["state"] == "busy"  # reconnected to
    assert ({f: sorted(zk_view.records(f)) for f in ("batch", "interactive")}, second.batch_ids(), session_ids(second)) == kept
    assert second.delete(f"/batches/{running}").status_code == 200 and second.delete(f"/sessions/{busy}").status_code == 200


def test_the_zookeeper_sweep_deletes_nothing_across_a_takeover(group, zk_view, job_file: str, monkeypatch) -> None:  # noqa: F811
    """An orphan record no server holds, and the leader killed -9 after it was asked and before the sweep deletes:
    the new leader recovered the orphan and holds it, and the sweep's delete, fenced by the epoch it read before
    asking, is refused by ZooKeeper. The next sweep asks the new leader, which holds it: kept."""
    first = group(**RETAINED)
    wait_leading(first, 30)
    second = group(**RETAINED)
    done = first.submit(file=job_file, args=["sleep=0"])["id"]
    first.wait_for(done)
    record = wait_until(lambda: zk_view.records()[done].get("finishedAt") and zk_view.records()[done], 30, "the record")
    orphan = {**record, "id": 900, "name": None}  # a record of ours with its index entry, held by nobody
    zk_view.write("v1/batch/900", json.dumps(orphan).encode())
    zk_view.write(f"v1/batch-index/{entry_name(orphan)}", b"")
    assert first.delete(f"/batches/{done}").status_code == 200
    time.sleep(MIN_AGE)
    group_connection(monkeypatch, "sweep_group", first.port, second.port)
    hook = LivyHook("sweep_group", retries=2)

    def asked_then_taken_over() -> int | None:
        answered = hook.leader_epoch()  # the leader that answered leads at the epoch read: the sweep may delete
        first.stop(signal.SIGKILL)
        wait_leading(second, SESSION_TIMEOUT + 30)
        return answered

    rules = Rules(min_age=MIN_AGE, untouched=3600)
    swept = sweep_zookeeper(zk_view.client, zk_view.prefix, lambda: server_ids(hook), rules, leader_epoch=asked_then_taken_over)
    records = {why: n for why, n in swept.kept.items() if why != KEEP_NOT_RECORD}  # the ids' state nodes aside
    assert (swept.deleted, records, swept.errors) == ([], {KEEP_TAKEOVER: 1}, []), swept.as_dict()
    assert 900 in zk_view.records() and second.get("/batches/900").json()["state"] == "success"  # the new leader holds it
    again = sweep_zookeeper(zk_view.client, zk_view.prefix, lambda: server_ids(hook), rules, leader_epoch=hook.leader_epoch)
    assert (again.deleted, again.kept[KEEP_HELD], again.kept[KEEP_TAKEOVER]) == ([], 1, 0), again.as_dict()
    untold = sweep_zookeeper(zk_view.client, zk_view.prefix, lambda: {"batch": set(), "session": set()}, rules)
    assert untold.deleted == [] and untold.kept[KEEP_GROUP_UNASKED] == 1, untold.as_dict()  # no leader confirmed: kept
    assert untold.errors == [f"no server of the connection says it leads the group at epoch {untold.extra['group_epoch']} "
                             "(GET /ready, on the server that answered or the leader it names); nothing of the group was deleted"]
    hook.close()


LONG_FAILOVER = 6.0  # a session timeout whose failover outlasts 5 retries a second apart


def test_a_session_task_mid_statement_survives_a_kill_9_of_the_leader(group, zk_view, dag_runner: DagRunner) -> None:  # noqa: F811
    """dag.test runs a LivySessionOperator through a two-server connection (the REPL is the real one, as plain
    Python); the leader is killed -9 while a statement runs. The new leader reconnects to the live session, the
    task waits the statement out there, runs the next one against the interpreter state set before the kill,
    succeeds and deletes the session: nothing left in ZooKeeper nor on the new leader. The failover lasts longer
    than the hook's 5 retries would (the default session timeout makes it 10-12 s): the statement's polls wait it
    out, the dead leader refusing and the other answering 503 until it leads."""
    first, second, env = leader_and_standby(lambda: group(session_timeout=LONG_FAILOVER))
    statements = ["x = 6 * 7", "import time; time.sleep(6)", "print('x is', x)"]
    dag = dag_runner.write_dag(
        "livy_session_failover",
        "LivySessionOperator(task_id='repl', statements={statements!r}, polling_interval=1, dag=dag)\n",
        statements=statements,
    )
    run = dag_runner.start(dag, "livy_session_failover", env)
    line = run.wait_for_output("statement 1 (id 1) submitted", timeout=180)
    session_id = int(re.search(r"\[livy session (\d+)\]", line).group(1))
    assert first.wait_for(session_id, {"busy"}, path="/sessions", timeout=30)["state"] == "busy"
    first.stop(signal.SIGKILL)
    wait_leading(second, LONG_FAILOVER + 30)
    outcome = run.outcome(timeout=180)
    out = outcome.output
    assert outcome.task("repl")["state"] == "success", out[-5000:]
    assert "waiting for the group to have a leader" in out, out[-5000:]
    assert "x is 42" in out  # the interpreter state set before the kill, read after it
    assert f"Livy GET http://127.0.0.1:{first.port}/sessions/{session_id}/statements/1" in out  # it lost the leader
    assert out.count(f"Livy session {session_id} created") == 1
    assert session_ids(second) == [] and zk_view.records("interactive") == {}
