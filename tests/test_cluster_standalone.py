"""Deploy mode cluster on a real Spark standalone cluster: the server hands each driver to the cluster,
follows it through the master's JSON status, kills it there, and follows it again after a restart.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import LivyServer, free_port, kill_drivers, start_server
from tests.spark_cluster import StandaloneCluster, compile_sleeper, start_cluster

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    work_dir = tmp_path_factory.mktemp("standalone")
    started = start_cluster(work_dir)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def sleeper_jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_sleeper(tmp_path_factory.mktemp("sleeper"))


def full_log(server: LivyServer, batch_id: int) -> list[str]:
    return server.get(f"/batches/{batch_id}/log", params={"from": 0, "size": -1}).json()["log"]


def driver_id(server: LivyServer, batch_id: int) -> str:
    for line in full_log(server, batch_id):
        if "handed the driver to the cluster as " in line:
            return line.split(" as ", 1)[1].split(";")[0]
    raise AssertionError(full_log(server, batch_id))


def spark_submits(jar: Path) -> list[psutil.Process]:
    """SparkSubmit JVMs of our jobs (the machine may run other people's)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "org.apache.spark.deploy.SparkSubmit" in cmdline and str(jar) in cmdline:
            found.append(proc)
    return found


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_drivers_are_followed_killed_and_followed_again_after_a_restart_on_another_port(
    cluster: StandaloneCluster, sleeper_jar: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    settings = {
        **cluster.settings(),
        "livy.server.recovery.mode": "recovery",
        "livy.server.recovery.state-store": "filesystem",
        "livy.server.recovery.state-store.url": str(store),
        "livy.server.log-dir": "",  # the default: beside the store, not named after the port
        "livy.file.local-dir-whitelist": str(sleeper_jar.parent),
    }
    # No executor fits the worker (8g > 3g): the apps register and wait, so only the drivers' JVMs run.
    common = {"file": str(sleeper_jar), "className": "Sleeper", "driverMemory": "512m", "executorMemory": "8g"}
    first = start_server(tmp_path, settings)
    servers = [first]
    try:
        release = tmp_path / "release"  # the drivers wait for it; "failing" is released at once
        (tmp_path / "now").touch()
        ok = first.submit(**common, args=[str(release)], name="ok")
        failing = first.submit(**common, args=[str(tmp_path / "now"), "fail"], name="failing")
        doomed = first.submit(**common, args=[str(release)], name="doomed")

        view = first.wait_for(ok["id"], {"running", "success", "dead"}, timeout=240)
        assert view["state"] == "running", full_log(first, ok["id"])
        ok_driver = driver_id(first, ok["id"])
        assert cluster.driver(ok_driver)["state"] == "RUNNING"
        first.wait_for(doomed["id"], {"running"}, timeout=240)
        wait_until(lambda: not spark_submits(sleeper_jar), 60, "spark-submit to exit after handing its driver over")
        assert first.get(f"/batches/{ok['id']}").json()["state"] == "running", "still running, with no spark-submit left"
        assert first.get(f"/batches/{ok['id']}").json()["appInfo"]["driverLogUrl"].startswith("http://127.0.0.1:")

        dead = first.wait_for(failing["id"], timeout=240)
        assert dead["state"] == "dead", full_log(first, failing["id"])
        assert any("failing on purpose" in line for line in full_log(first, failing["id"])), "the driver's stderr"

        doomed_driver = driver_id(first, doomed["id"])
        assert cluster.driver(doomed_driver)["section"] == "activedrivers"
        assert first.delete(f"/batches/{doomed['id']}").status_code == 200
        gone = cluster.driver(doomed_driver)
        assert gone["section"] == "completeddrivers" and gone["state"] == "KILLED", gone

        first.stop(signal.SIGKILL)
        assert cluster.driver(ok_driver)["state"] == "RUNNING"
        second = start_server(tmp_path, settings, port=free_port())
        servers.append(second)
        assert second.get(f"/batches/{ok['id']}").json()["state"] == "running"
        time.sleep(2)
        assert second.get(f"/batches/{ok['id']}").json()["state"] == "running", "followed, not ended, after the restart"
        release.touch()
        done = second.wait_for(ok["id"], timeout=240)
        assert done["state"] == "success", full_log(second, ok["id"])
        assert done["appId"].startswith("app-"), done
        assert cluster.driver(ok_driver)["state"] == "FINISHED"
        log = full_log(second, ok["id"])
        assert any("sleeper done" in line for line in log), "the driver's stdout, from its worker"
        assert (store / "driver-logs" / f"{ok['id']}.log").exists()
    finally:
        for server in servers:
            server.stop()
        kill_drivers(tmp_path)
