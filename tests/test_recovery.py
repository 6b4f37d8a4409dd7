"""Recovery through both state stores: crash and restart, expiry across a restart, corrupt and Livy records."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

from tests.conftest import LivyServer
from tests.state_store import StoreView, ZooKeeperView, livy_record

RUNNING_STATES = {"running"}
T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 20, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def log_lines(server: LivyServer, batch_id: int) -> list[str]:
    return server.get(f"/batches/{batch_id}/log", params={"size": -1}).json()["log"]


def test_kill_9_with_running_batches_then_restart_accounts_for_every_batch(make_server, store: StoreView, job_file: str) -> None:
    settings = {**store.settings, "livy.server.session.max-creation": "3"}
    server = make_server(settings)
    done_ok = server.submit(file=job_file, args=["app=app-20250101000000-0001"])["id"]
    done_bad = server.submit(file=job_file, args=["exit=3"])["id"]
    server.wait_for(done_ok)
    server.wait_for(done_bad)
    ends_while_down = server.submit(file=job_file, args=["sleep=1.5", "app=app-20250101000000-0002"])["id"]
    long = [
        server.submit(file=job_file, args=["sleep=6", f"app=app-20250101000000-{10 + i:04d}", "lines=3"])["id"] for i in range(8)
    ]
    server.wait_for(ends_while_down, RUNNING_STATES)
    running_pid = store.records()[long[0]]["pid"]
    server.stop(signal.SIGKILL)
    assert psutil.pid_exists(running_pid), "the driver must outlive the server"
    time.sleep(2)

    restarted = make_server(settings)
    ids = restarted.batch_ids()
    assert ids == [done_ok, done_bad, ends_while_down, *long]
    assert restarted.get(f"/batches/{done_ok}").json()["state"] == "success"
    assert restarted.get(f"/batches/{done_ok}").json()["appId"] == "app-20250101000000-0001"
    assert restarted.get(f"/batches/{done_bad}").json()["state"] == "dead"
    view = restarted.get(f"/batches/{ends_while_down}").json()
    assert view["state"] == "success", view
    assert view["appId"] == "app-20250101000000-0002"
    assert any("ended with exit code 0 while the server was down" in line for line in log_lines(restarted, ends_while_down))
    for i, batch_id in enumerate(long):  # queued ones were relaunched, running ones re-attached: all end well
        final = restarted.wait_for(batch_id, timeout=60)
        assert final["state"] == "success", final
        assert final["appId"] == f"app-20250101000000-{10 + i:04d}"
        lines = log_lines(restarted, batch_id)
        assert "driver line 2" in lines and lines.count("driver line 0") == 1, lines
    new = restarted.submit(file=job_file)["id"]
    assert new == long[-1] + 1, "ids never go backwards"
    records = wait_until(lambda: (r := store.records()) and all(r[i]["state"] == "success" for i in long) and r, what="records")
    assert set(records) == {*ids, new}
    assert store.next_session_id() == new + 1
    assert {name.split("_")[0] for name in store.index()} == {str(i) for i in records}


def test_retention_runs_on_across_a_restart_and_expired_records_are_purged(make_server, store: StoreView, job_file: str) -> None:
    settings = {**store.settings, "livy.server.session.state-retain.sec": "10s"}
    server = make_server(settings)
    first = server.wait_for(server.submit(file=job_file)["id"])
    time.sleep(10)  # the second outlives the first by this much: a slow restart (4-5 s at load 9) must fit in it
    second = server.wait_for(server.submit(file=job_file)["id"])
    server.stop(signal.SIGKILL)
    wait_until(lambda: time.time() > first["expiresAt"] + 0.2, what="the first batch's retention to end")

    restarted = make_server(settings)
    assert restarted.batch_ids() == [second["id"]], "an expired batch is never registered again"
    view = restarted.get(f"/batches/{second['id']}").json()
    assert view["finishedAt"] == second["finishedAt"], "the restart did not restart the retention clock"
    assert view["expiresAt"] == second["expiresAt"]
    wait_until(lambda: first["id"] not in store.records(), what="the purge")
    assert not [n for n in store.index() if n.startswith(f"{first['id']}_")]
    assert not (restarted.work_dir / "driver-logs" / f"{first['id']}.log").exists()
    wait_until(lambda: restarted.get(f"/batches/{second['id']}").status_code == 404, timeout=10, what="collection")
    assert time.time() >= second["expiresAt"] - 0.1
    wait_until(lambda: not store.records(), what="the collected record to go")


def test_corrupt_records_are_logged_and_removed(make_server, store: StoreView, job_file: str) -> None:
    server = make_server(store.settings)
    kept = server.wait_for(server.submit(file=job_file)["id"])
    server.stop()
    store.write("v1/batch/5", b"{not json")
    store.write("v1/batch/6", b'{"id": 99, "state": "running", "createdAt": 1}')
    store.write("v1/batch/7", b'{"id": 7, "state": "exploded", "createdAt": 1}')
    store.write("v1/batch/8", b"[1, 2]")

    restarted = make_server(store.settings)
    assert restarted.batch_ids() == [kept["id"]]
    log = restarted.server_log()
    for batch_id, reason in ((5, "not JSON"), (6, "does not match its key"), (7, "unknown state"), (8, "not a JSON object")):
        assert f"removing the unparseable record of batch {batch_id}" in log and reason in log
    wait_until(lambda: set(store.records()) == {kept["id"]}, what="corrupt records to go")
    assert restarted.submit(file=job_file)["id"] == 9, "ids of removed records are not reused"


def test_records_written_by_apache_livy_are_understood(make_server, store: StoreView, job_file: str) -> None:
    settings = {**store.settings, "livy.server.session.state-retain.sec": "12s"}  # long enough for a slow start
    store.write("v1/batch/state", b'{"nextSessionId": 42}')
    store.write("v1/batch/40", livy_record(40, "application_1700000000000_0040"))
    time.sleep(12.2)  # record 40 was last written longer ago than state-retain
    store.write("v1/batch/41", livy_record(41, "application_1700000000000_0041"))

    server = make_server(settings)
    assert server.batch_ids() == [41]
    view = server.get("/batches/41").json()
    assert view["state"] == "dead"
    assert view["appId"] == "application_1700000000000_0041"
    assert view["owner"] == "alice"
    assert abs(view["finishedAt"] - time.time()) < 12.5, "its age comes from the record's modification time"
    assert any("written by Apache Livy" in line for line in log_lines(server, 41))
    record = wait_until(lambda: store.records().get(41, {}).get("state") and store.records()[41], what="re-indexing")
    assert record["appTag"] == "livy-batch-41-AbCdEfGh" and record["version"] == 1
    assert [n for n in store.index() if n.startswith("41_")]
    wait_until(lambda: 40 not in store.records(), what="the expired Livy record to go")
    assert server.submit(file=job_file)["id"] == 42


def test_graceful_shutdown_with_recovery_leaves_drivers_running(make_server, store: StoreView, job_file: str) -> None:
    server = make_server(store.settings)
    batch_id = server.submit(file=job_file, args=["sleep=10", "app=app-20250101000000-0077"])["id"]
    server.wait_for(batch_id, RUNNING_STATES)
    pid = wait_until(lambda: store.records()[batch_id].get("pid"), what="the pid in the record")
    server.stop()
    assert "Application shutdown complete" in server.server_log(), "a graceful shutdown"
    assert psutil.pid_exists(pid)
    restarted = make_server(store.settings)
    assert restarted.get(f"/batches/{batch_id}").json()["state"] == "running"
    final = restarted.wait_for(batch_id, timeout=30)
    assert final["state"] == "success" and final["appId"] == "app-20250101000000-0077"


def test_graceful_shutdown_without_recovery_kills_drivers(make_server, job_file: str) -> None:
    server = make_server()
    batch_id = server.submit(file=job_file, args=["sleep=30"])["id"]
    server.wait_for(batch_id, RUNNING_STATES)
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert children
    server.stop()
    assert "Application shutdown complete" in server.server_log(), "a graceful shutdown"
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"drivers left running: {alive}"


def test_unreachable_zookeeper_at_start_up_is_a_clear_error(tmp_path: Path) -> None:
    from tests.conftest import free_port

    hosts = f"127.0.0.1:{free_port()}"
    settings = {
        "livy.server.recovery.mode": "recovery",
        "livy.server.recovery.state-store": "zookeeper",
        "livy.server.recovery.state-store.url": hosts,
        "livy.server.port": str(free_port()),
        "livy.server.log-dir": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_livy.server", *(a for k, v in settings.items() for a in ("--set", f"{k}={v}"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"ZooKeeper at {hosts} is unreachable" in done.stderr


def test_zookeeper_lost_while_running_then_regained(make_server, private_zookeeper, zk_prefix: str, job_file: str) -> None:
    store = ZooKeeperView(private_zookeeper.hosts, zk_prefix)
    server = make_server(store.settings)
    finishing = server.submit(file=job_file, args=["sleep=2", "app=app-20250101000000-0005"])["id"]
    doomed = server.submit(file=job_file, args=["sleep=60"])["id"]
    server.wait_for(doomed, RUNNING_STATES)
    store.close()
    private_zookeeper.stop()

    assert server.get(f"/batches/{finishing}").status_code == 200, "reads keep being served"
    refused = server.post("/batches", json={"file": job_file})
    assert refused.status_code == 503, refused.text
    assert "ZooKeeper" in refused.json()["msg"] and refused.headers["Retry-After"]
    assert server.delete(f"/batches/{doomed}").json() == {"msg": "deleted"}
    assert server.wait_for(finishing)["state"] == "success"
    assert server.batch_ids() == [finishing]

    private_zookeeper.start()
    store = ZooKeeperView(private_zookeeper.hosts, zk_prefix)
    try:
        records = wait_until(
            lambda: (r := store.records()) and set(r) == {finishing} and r[finishing]["state"] == "success" and r,
            timeout=30,
            what="the store to catch up with memory",
        )
        assert records[finishing]["appId"] == "app-20250101000000-0005"
        assert [n.split("_")[0] for n in store.index()] == [str(finishing)]
        assert store.index()[0].split("_")[2], "the index entry shows the batch finished"
        created = server.submit(file=job_file)["id"]
        assert created > doomed + 1, "the refused creation's id is not reused"
        assert store.next_session_id() == created + 1
        assert server.proc.poll() is None
        assert "re-synced" in server.server_log()
    finally:
        store.close()
