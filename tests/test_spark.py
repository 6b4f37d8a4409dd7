"""Real spark-submit jobs through the server: local mode and a standalone cluster on loopback."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from airflow_provider_livy.example_jobs import PI_JOB
from tests.conftest import LivyServer
from tests.spark_cluster import start_cluster

pytestmark = pytest.mark.spark


def full_log(server: LivyServer, batch_id: int) -> list[str]:
    return server.get(f"/batches/{batch_id}/log", params={"from": 0, "size": -1}).json()["log"]


def test_local_spark_success_and_failure(make_server) -> None:
    server = make_server({"livy.spark.master": "local[1]"}, fake_spark=False)
    ok = server.submit(file=str(PI_JOB), args=["2"], name="pi-ok", driverMemory="512m")
    failed = server.submit(file=str(PI_JOB), args=["1", "--fail"], name="pi-fail")
    running = server.wait_for(ok["id"], {"running", "success"}, timeout=120)
    assert running["state"] in {"running", "success"}
    done = server.wait_for(ok["id"], timeout=180)
    assert done["state"] == "success", full_log(server, ok["id"])
    assert done["appId"] and done["appId"].startswith("local-"), done
    assert done["appInfo"]["sparkUiUrl"].startswith("http://")
    log = full_log(server, ok["id"])
    assert any("Pi is roughly 3.1" in line for line in log)
    page = server.get(f"/batches/{ok['id']}/log", params={"from": 2, "size": 5}).json()
    assert page["log"] == log[2:7]
    assert page["total"] == len(log)
    dead = server.wait_for(failed["id"], timeout=180)
    assert dead["state"] == "dead"
    assert any("failing on purpose" in line for line in full_log(server, failed["id"]))
    for batch_id in (ok["id"], failed["id"]):
        assert server.delete(f"/batches/{batch_id}").status_code == 200
    assert server.get("/batches").json()["total"] == 0


def test_delete_kills_a_real_driver(make_server) -> None:
    server = make_server({"livy.spark.master": "local[1]"}, fake_spark=False)
    batch = server.submit(file=str(PI_JOB), args=["1", "--linger=120"])
    deadline = time.monotonic() + 120
    while not any("Pi is roughly" in line for line in full_log(server, batch["id"])):
        assert time.monotonic() < deadline, full_log(server, batch["id"])
        time.sleep(0.5)
    pgid = os.getpgid(psutil.Process(server.proc.pid).children()[0].pid)
    drivers = [p for p in psutil.process_iter() if _pgid(p) == pgid]
    assert any("java" in p.name() for p in drivers)
    assert server.delete(f"/batches/{batch['id']}").status_code == 200
    assert not [p for p in drivers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert server.get(f"/batches/{batch['id']}").status_code == 404


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


@pytest.fixture
def standalone_master(tmp_path: Path) -> Iterator[str]:
    """A Spark standalone master and one worker on loopback, from the pyspark package."""
    cluster = start_cluster(tmp_path)
    yield cluster.master_url
    cluster.stop()


def test_standalone_cluster_reports_app_id(make_server, standalone_master: str) -> None:
    server = make_server({"livy.spark.master": standalone_master}, fake_spark=False)
    batch = server.submit(file=str(PI_JOB), args=["1"], executorMemory="512m")
    view = server.wait_for(batch["id"], timeout=240)
    assert view["state"] == "success", full_log(server, batch["id"])
    assert view["appId"] and view["appId"].startswith("app-"), view
    assert any(
        f"--conf spark.master={standalone_master}" in line or standalone_master in line for line in full_log(server, batch["id"])
    )
