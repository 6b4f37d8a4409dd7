"""Several real livy-server processes on one real ZooKeeper (recovery mode ha), fake spark-submit.

One leads; a standby proxies to it; kill -9, SIGSTOP and SIGTERM of the leader hand the group
to the other, which serves every record. The election itself is tested in test_leadership.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.conftest import LivyServer, free_port
from tests.state_store import ZooKeeperView

SESSION_TIMEOUT = 2.0


def ha_settings(zookeeper_hosts: str, prefix: str, port: int, session_timeout: float = SESSION_TIMEOUT) -> dict[str, str]:
    """livy.conf of a group member on `port`: the group is the servers on one ZooKeeper `prefix`."""
    return {
        "livy.server.recovery.mode": "ha",
        "livy.server.recovery.state-store": "zookeeper",
        "livy.server.recovery.state-store.url": zookeeper_hosts,
        "livy.server.recovery.zk-state-store.key-prefix": prefix,
        "livy.server.ha.session-timeout": f"{session_timeout:g}s",
        "livy.server.ha.advertised-url": f"http://127.0.0.1:{port}",
    }


@pytest.fixture
def group(make_server, zookeeper, zk_prefix) -> Callable[..., LivyServer]:
    def start(session_timeout: float = SESSION_TIMEOUT, **settings: str) -> LivyServer:
        port = free_port()
        return make_server({**ha_settings(zookeeper.hosts, zk_prefix, port, session_timeout), **settings}, port=port)

    return start


@pytest.fixture
def zk_view(zookeeper, zk_prefix):
    view = ZooKeeperView(zookeeper.hosts, zk_prefix)
    yield view
    view.close()


def ready(server: LivyServer) -> tuple[int, dict[str, Any]]:
    answer = requests.get(server.url + "/ready", timeout=5)
    return answer.status_code, answer.json()


def wait_leading(server: LivyServer, timeout: float) -> float:
    start = time.monotonic()
    while ready(server)[0] != 200:
        assert time.monotonic() - start < timeout, f"{server.url} did not lead within {timeout}s: {ready(server)}"
        time.sleep(0.02)
    return time.monotonic() - start


def metric(server: LivyServer, name: str) -> float:
    for line in requests.get(server.url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics of {server.url}")


def test_one_leads_and_a_standby_proxies_to_it(group, zk_view, job_file):
    first = group()
    wait_leading(first, 30)
    second = group()
    code, body = ready(second)
    assert (code, body) == (503, {"role": "standby", "leader": first.url})
    assert ready(first) == (200, {"role": "leader", "leader": first.url, "epoch": ready(first)[1]["epoch"]})
    assert second.get("/version").json()["server"] == "airflow-provider-livy"
    created = second.submit(file=job_file, args=["sleep=0"])  # through the standby
    assert created["id"] in zk_view.records()  # a 201 means the record is in ZooKeeper
    assert second.wait_for(created["id"])["state"] == "success"
    assert [b["id"] for b in second.get("/batches").json()["sessions"]] == [created["id"]]
    assert (metric(first, "livy_ha_leader"), metric(second, "livy_ha_leader")) == (1, 0)
    assert metric(first, "livy_ha_takeovers_total") == 1
    assert "livy_batches_created_total" in requests.get(first.url + "/metrics", timeout=5).text
    epoch = ready(first)[1]["epoch"]
    for server in (first, second):  # a standby proxies /ui too: the page is the leader's, saying so
        page = requests.get(server.url + "/ui", timeout=10)
        assert page.status_code == 200 and f'<span class="group">leader · epoch {epoch}</span>' in page.text


def test_kill_9_of_the_leader_the_other_serves_every_record(group, zk_view, job_file, tmp_path, monkeypatch):
    """50 batches: finished well and badly, running, one whose driver is not up yet (it holds the only creation
    slot), and the rest waiting for it; and two live interactive sessions, one idle holding a variable, one
    mid-statement. Each batch is launched exactly once across the failover (counted) and ends as it would have;
    the sessions keep their interpreters (a real Spark session does in test_group_spark.py)."""
    launches = tmp_path / "launches.txt"
    monkeypatch.setenv("FAKE_SPARK_ARGS_FILE", str(launches))
    first = group(**{"livy.server.session.max-creation": "1"})
    wait_leading(first, 30)
    second = group(**{"livy.server.session.max-creation": "1"})
    notebook, working = (first.open_session(name=name)["id"] for name in ("notebook", "working"))
    assert first.run(notebook, "x = 6 * 7")["state"] == "available"
    expected: dict[int, str] = {}
    for n in range(15):
        batch = first.submit(file=job_file, args=[f"mark=b{n}-", "exit=3" if n % 3 == 0 else "sleep=0"])["id"]
        first.wait_for(batch)
        expected[batch] = "dead" if n % 3 == 0 else "success"
    for n in range(15, 19):
        batch = first.submit(file=job_file, args=[f"mark=b{n}-", "sleep=4"])["id"]
        first.wait_for(batch, {"running"})
        expected[batch] = "success"
    holding = first.submit(file=job_file, args=["mark=b19-", "delay=3", "sleep=1"])["id"]  # not up yet: holds the slot
    expected[holding] = "success"
    for n in range(20, 50):
        expected[first.submit(file=job_file, args=[f"mark=b{n}-", "sleep=0"])["id"]] = "success"  # waiting for the slot
    before = {b["id"]: b["state"] for b in first.get("/batches", params={"size": 100}).json()["sessions"]}
    assert list(before.values()).count("starting") == 31
    statement = first.post(f"/sessions/{working}/statements", json={"code": "import time; time.sleep(4); y = 2"}).json()
    assert first.wait_for(working, {"busy"}, path="/sessions")["state"] == "busy"
    killed = time.monotonic()
    first.stop(signal.SIGKILL)
    unavailable = requests.get(second.url + "/batches", timeout=5)
    wait_leading(second, SESSION_TIMEOUT + 30)
    failover = time.monotonic() - killed
    assert failover <= SESSION_TIMEOUT + 2, f"the other served as the leader {failover:.2f}s after the kill"
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "1"
    served = {b["id"]: b["state"] for b in second.get("/batches", params={"size": 100}).json()["sessions"]}
    assert set(served) == set(before) == set(expected)
    ended = {batch: second.wait_for(batch, timeout=60)["state"] for batch in expected}  # followed again, or launched
    assert ended == expected
    assert {i: r["state"] for i, r in zk_view.records().items()} == expected
    calls = launches.read_text()
    assert [calls.count(f"mark=b{n}-") for n in range(50)] == [1] * 50  # each launched exactly once
    assert second.submit(file=job_file, args=["sleep=0"])["id"] == max(expected) + 1  # ids go on from ZooKeeper's counter
    path = f"/sessions/{working}/statements/{statement['id']}"
    deadline = time.monotonic() + 30
    while (answer := second.get(path).json())["state"] != "available":  # the statement in flight at the kill
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    assert answer["output"]["status"] == "ok"
    assert second.run(working, "y")["output"]["data"]["text/plain"] == "2"
    assert second.run(notebook, "x")["output"]["data"]["text/plain"] == "42"
    assert set(zk_view.records("interactive")) == {notebook, working}


def test_a_paused_leader_ends_itself_and_changes_nothing(group, zk_view, job_file):
    first = group()
    wait_leading(first, 30)
    second = group()
    kept = first.submit(file=job_file, args=["sleep=0"])["id"]
    first.wait_for(kept)
    os.kill(first.proc.pid, signal.SIGSTOP)
    wait_leading(second, SESSION_TIMEOUT + 30)
    taken = zk_view.records()
    os.kill(first.proc.pid, signal.SIGCONT)
    assert first.proc.wait(15) == 75  # stepped down by ending its process
    assert zk_view.records() == taken
    assert metric(second, "livy_ha_leader") == 1
    assert second.get(f"/batches/{kept}").json()["state"] == "success"


def pair_with_a_batch(group, job_file: str) -> tuple[LivyServer, LivyServer, int]:
    """A leader and a standby with a session timeout long enough to tell a handover from an expiry, one batch done."""
    first = group(session_timeout=8.0)
    wait_leading(first, 30)
    second = group(session_timeout=8.0)
    batch = second.submit(file=job_file, args=["sleep=0"])["id"]
    second.wait_for(batch)
    return first, second, batch


def test_sigterm_hands_over_without_waiting_for_the_session_to_expire(group, job_file):
    """The figure (well under a second when the machine is quiet) is bench_ha's; here: no wait for the timeout."""
    first, second, batch = pair_with_a_batch(group, job_file)
    asked = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    wait_leading(second, 10)
    took = time.monotonic() - asked
    assert took < 4.0, f"handover took {took:.2f}s"
    assert second.get(f"/batches/{batch}").json()["state"] == "success"
    assert first.proc.wait(15) == -signal.SIGTERM  # uvicorn ends by raising the signal it caught: not 75, a loss


def test_configuration_of_a_group():
    from airflow_provider_livy.server.config import ConfigError, build_config

    zk = [("livy.server.recovery.state-store", "zookeeper"), ("livy.server.recovery.state-store.url", "127.0.0.1:2181")]
    config = build_config([("livy.server.recovery.mode", "ha"), ("livy.server.port", "9001"), *zk])
    assert (config.ha, config.recovery, config.ha_session_timeout) == (True, True, 10.0)
    assert config.advertised_url == "http://127.0.0.1:9001"
    config = build_config(
        [("livy.server.recovery.mode", "ha"), ("livy.server.ha.advertised-url", "https://livy-a.example:8998"), *zk]
    )
    assert config.advertised_url == "https://livy-a.example:8998"
    shorter = build_config([("livy.server.recovery.mode", "ha"), ("livy.server.ha.session-timeout", "4s"), *zk])
    assert shorter.ha_session_timeout == 4
    with pytest.raises(ConfigError, match=r"needs livy\.server\.recovery\.state-store = zookeeper"):
        build_config([("livy.server.recovery.mode", "ha"), ("livy.server.recovery.state-store.url", "/tmp/x")])
    with pytest.raises(ConfigError, match="a duration needs a unit"):
        build_config([("livy.server.recovery.mode", "ha"), ("livy.server.ha.session-timeout", "10"), *zk])
    with pytest.raises(ConfigError, match="expected an http"):
        build_config([("livy.server.recovery.mode", "ha"), ("livy.server.ha.advertised-url", "livy-a:8998"), *zk])


def test_a_paused_leader_launches_nothing_twice_and_nothing_deleted_comes_back(group, zk_view, job_file, tmp_path, monkeypatch):
    """SIGSTOP of the leader while one batch runs (it ends meanwhile), one holds the only creation slot, and a
    DELETE of a third, waiting for that slot, is in flight to it; the other server takes over; then SIGCONT."""
    launches = tmp_path / "launches.txt"
    monkeypatch.setenv("FAKE_SPARK_ARGS_FILE", str(launches))  # the fake spark-submit appends its arguments
    one_slot = {"livy.server.session.max-creation": "1"}
    first = group(**one_slot)
    wait_leading(first, 30)
    second = group(**one_slot)
    ending = first.submit(file=job_file, args=["sleep=3", "mark=ending"])["id"]
    first.wait_for(ending, {"running"})
    # Its driver is up only after 8 s: until then it holds the slot, at the paused leader and at the new one, so
    # the doomed batch is never due to launch before its DELETE reaches the new leader.
    waiting = first.submit(file=job_file, args=["delay=8", "sleep=1", "mark=waiting"])["id"]
    doomed = first.submit(file=job_file, args=["mark=doomed"])["id"]
    os.kill(first.proc.pid, signal.SIGSTOP)
    in_flight: dict[str, Any] = {}

    def delete_at_the_paused_leader() -> None:
        try:
            in_flight["status"] = requests.delete(f"{first.url}/batches/{doomed}", timeout=60).status_code
        except requests.RequestException as err:
            in_flight["status"] = type(err).__name__

    sender = threading.Thread(target=delete_at_the_paused_leader)
    sender.start()
    wait_leading(second, SESSION_TIMEOUT + 30)
    assert second.delete(f"/batches/{doomed}").status_code == 200  # the client's retry, at the new leader
    assert second.wait_for(ending)["state"] == "success"
    assert second.wait_for(waiting)["state"] == "success"
    os.kill(first.proc.pid, signal.SIGCONT)
    assert first.proc.wait(15) == 75
    sender.join(60)
    assert in_flight["status"] != 200  # the paused leader could not delete it: 503 or a dropped connection
    calls = launches.read_text()
    assert (calls.count("mark=ending"), calls.count("mark=waiting"), calls.count("mark=doomed")) == (1, 1, 0)
    served = {b["id"]: b["state"] for b in second.get("/batches").json()["sessions"]}
    assert served == {i: r["state"] for i, r in zk_view.records().items()} == {ending: "success", waiting: "success"}


def test_clients_polling_a_standby_see_no_failure_across_a_clean_handover(group, job_file):
    first, second, batch = pair_with_a_batch(group, job_file)
    answers: list[int | str] = []
    stop = threading.Event()

    def poll() -> None:
        with requests.Session() as client:  # no retries: a 503 or a refused connection would count as a failure
            while not stop.is_set():
                try:
                    answer = client.get(f"{second.url}/batches/{batch}/state", timeout=30)
                    answers.append(answer.status_code if answer.status_code == 200 else f"{answer.status_code} {answer.text}")
                except requests.RequestException as err:
                    answers.append(type(err).__name__)

    pollers = [threading.Thread(target=poll) for _ in range(4)]
    for poller in pollers:
        poller.start()
    time.sleep(0.5)
    before = len(answers)
    first.proc.send_signal(signal.SIGTERM)
    wait_leading(second, 10)
    time.sleep(0.5)
    stop.set()
    for poller in pollers:
        poller.join(30)
    assert before > 0 and len(answers) > before
    assert set(answers) == {200}, {answer for answer in answers if answer != 200}


def test_kill_9_of_the_leader_the_other_reconnects_to_a_live_session(group, zk_view):
    """The session's REPL runs for real (as plain Python: the fake spark-submit has no Spark)."""
    first = group()
    wait_leading(first, 30)
    second = group()
    live = second.open_session(name="notebook")  # through the standby's proxy
    assert second.run(live["id"], "x = 6 * 7")["state"] == "available"
    assert live["id"] in zk_view.records("interactive")
    first.stop(signal.SIGKILL)
    wait_leading(second, SESSION_TIMEOUT + 30)
    back = second.wait_for(live["id"], {"idle"}, path="/sessions", timeout=30)
    assert back["name"] == "notebook"
    assert second.run(live["id"], "x")["output"]["data"]["text/plain"] == "42"  # its interpreter state survived
    assert second.delete(f"/sessions/{live['id']}").json() == {"msg": "deleted"}


def test_while_zookeeper_is_away_the_leaders_clocks_wait(make_server, private_zookeeper, zk_prefix, job_file):
    """A batch's ttl runs out while the leader cannot reach ZooKeeper (its connection suspended, its session alive):
    the batch is not killed then, POST answers 503, reads are served; once the session is back, the ttl ends it."""
    port = free_port()
    server = make_server(
        {
            "livy.server.recovery.mode": "ha",
            "livy.server.recovery.state-store": "zookeeper",
            "livy.server.recovery.state-store.url": private_zookeeper.hosts,
            "livy.server.recovery.zk-state-store.key-prefix": zk_prefix,
            "livy.server.ha.session-timeout": "10s",
            "livy.server.ha.advertised-url": f"http://127.0.0.1:{port}",
            "livy.server.batch.ttl": "3s",
        },
        port=port,
    )
    wait_leading(server, 30)
    batch = server.submit(file=job_file, args=["sleep=60"])["id"]
    server.wait_for(batch, {"running"})
    private_zookeeper.stop()
    stopped = time.monotonic()
    deadline = stopped + 8
    while requests.get(server.url + "/ready", timeout=5).status_code == 200:
        assert time.monotonic() < deadline, "the leader did not notice ZooKeeper was gone"
        time.sleep(0.1)
    time.sleep(max(0.0, stopped + 4 - time.monotonic()))  # the ttl ran out meanwhile
    assert server.get(f"/batches/{batch}").json()["state"] == "running"
    refused = server.post("/batches", json={"file": job_file})
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    private_zookeeper.start()
    wait_leading(server, 20)
    assert server.wait_for(batch, {"dead", "killed"}, timeout=20)["state"] in ("dead", "killed")
    assert server.proc.poll() is None  # the same session came back: it still leads


def test_every_batch_accepted_up_to_a_kill_9_runs_exactly_once(group, zk_view, job_file, tmp_path, monkeypatch):
    """POSTs keep arriving while the leader is killed: the last ones answered 201 are between their launch mark
    and their driver's start, or still queued. Each acknowledged batch runs once, at one leader or the other,
    and ends as it would have; none comes back dead for having been caught in between."""
    launches = tmp_path / "launches.txt"
    monkeypatch.setenv("FAKE_SPARK_ARGS_FILE", str(launches))
    first = group()
    wait_leading(first, 30)
    second = group()
    accepted: dict[int, str] = {}
    stop = threading.Event()

    def submit_until_the_kill(worker: int) -> None:
        with requests.Session() as client:
            for n in range(1000):
                if stop.is_set():
                    return
                mark = f"mark=w{worker}n{n}-"
                try:
                    answer = client.post(f"{first.url}/batches", json={"file": job_file, "args": [mark]}, timeout=30)
                except requests.RequestException:
                    return  # no answer: maybe created, maybe not; only acknowledged ones are promised
                if answer.status_code == 201:
                    accepted[answer.json()["id"]] = mark

    senders = [threading.Thread(target=submit_until_the_kill, args=(w,)) for w in range(4)]
    for sender in senders:
        sender.start()
    while len(accepted) < 40:
        time.sleep(0.005)
    first.stop(signal.SIGKILL)
    stop.set()
    for sender in senders:
        sender.join(30)
    wait_leading(second, SESSION_TIMEOUT + 30)
    ended = {batch: second.wait_for(batch, timeout=60)["state"] for batch in accepted}
    assert ended == dict.fromkeys(accepted, "success")
    calls = launches.read_text()
    assert {mark: calls.count(mark) for mark in accepted.values()} == dict.fromkeys(accepted.values(), 1)
    assert all(calls.count(mark) <= 1 for mark in set(calls.split()) if mark.startswith("mark="))
    assert {i: r["state"] for i, r in zk_view.records().items() if i in accepted} == ended


def test_a_launch_mark_that_lands_after_the_leader_died_launches_once(
    make_server, private_zookeeper, zk_prefix, job_file, tmp_path, monkeypatch
):
    """The window between a batch's launch mark and its driver's start, made wide: ZooKeeper is paused while the
    leader sends the mark, the leader is killed, then ZooKeeper resumes and applies the mark it had received.
    The new leader finds a batch marked launched whose driver never started: it launches it, once."""
    launches = tmp_path / "launches.txt"
    monkeypatch.setenv("FAKE_SPARK_ARGS_FILE", str(launches))
    one_slot = {"livy.server.session.max-creation": "1"}

    def member() -> LivyServer:
        port = free_port()
        return make_server({**ha_settings(private_zookeeper.hosts, zk_prefix, port, 4.0), **one_slot}, port=port)

    first = member()
    wait_leading(first, 30)
    second = member()
    holder = first.submit(file=job_file, args=["delay=2", "mark=holder"])["id"]  # holds the only slot for 2 s
    started = time.monotonic()
    caught = first.submit(file=job_file, args=["mark=caught"])["id"]  # waits for the slot
    assert first.get(f"/batches/{caught}").json()["state"] == "starting"
    time.sleep(max(0.0, started + 1.5 - time.monotonic()))
    os.kill(private_zookeeper.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.2)  # the holder is up: the slot frees and the caught batch's launch mark is sent to ZooKeeper
        first.stop(signal.SIGKILL)
    finally:
        os.kill(private_zookeeper.proc.pid, signal.SIGCONT)
    wait_leading(second, 4.0 + 30)
    assert second.wait_for(caught, timeout=60)["state"] == "success"
    assert second.wait_for(holder, timeout=60)["state"] == "success"
    lines = second.get(f"/batches/{caught}/log", params={"size": 100}).json()["log"]
    assert any("held start was never confirmed" in line for line in lines), lines
    calls = launches.read_text()
    assert (calls.count("mark=holder"), calls.count("mark=caught")) == (1, 1)
