"""With recovery on, what a restart needs (driver logs, exit codes) lives beside the store, never in a
directory named after the port or in a temp dir, so a restart on another port still knows how drivers ended.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pytest

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.logs import default_log_dir, volatile_filesystem
from tests.conftest import LivyServer


def test_default_log_dir_follows_the_store_not_the_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    fs = ServerConfig(port=1234, recovery_mode="recovery", state_store="filesystem", state_store_url=f"file://{tmp_path}/s")
    assert default_log_dir(fs) == tmp_path / "s" / "driver-logs"
    assert default_log_dir(replace(fs, port=4321)) == default_log_dir(fs)
    zk = ServerConfig(
        port=1234, recovery_mode="recovery", state_store="zookeeper", state_store_url="zk:2181", zk_key_prefix="a/b"
    )
    assert default_log_dir(zk) == tmp_path / "xdg" / "livy-server" / "zookeeper-a_b" / "driver-logs"
    assert default_log_dir(replace(zk, state_dir=str(tmp_path / "st"))).parent.parent == tmp_path / "st"
    assert default_log_dir(replace(zk, log_dir="/srv/logs")) == Path("/srv/logs")
    without = default_log_dir(ServerConfig(port=1234))
    assert without.is_relative_to(tempfile.gettempdir()) and "1234" in str(without), "no recovery: per port, as before"


def test_volatile_filesystems_are_recognised(tmp_path: Path) -> None:
    assert volatile_filesystem(Path("/dev/shm/livy/logs")) == "tmpfs"
    assert volatile_filesystem(Path("/proc/self")) is None
    assert volatile_filesystem(tmp_path) in (None, "tmpfs")  # whatever /tmp is on the host, it is answered


def test_a_driver_that_exited_0_while_the_server_was_down_ends_success_after_a_restart_on_another_port(
    make_server, zookeeper, zk_prefix: str, job_file: str, tmp_path: Path
) -> None:
    """ZooKeeper store, local mode, default log dir (under the state dir): the exit code outlives the port."""
    settings = {
        "livy.server.recovery.mode": "recovery",
        "livy.server.recovery.state-store": "zookeeper",
        "livy.server.recovery.state-store.url": f"127.0.0.1:{zookeeper.port}",
        "livy.server.recovery.zk-state-store.key-prefix": zk_prefix,
        "livy.server.log-dir": "",
        "livy.server.state-dir": str(tmp_path / "state"),
    }
    server: LivyServer = make_server(settings)
    batch = server.submit(file=job_file, args=["sleep=3", "app=app-20260101000000-0001"])
    server.wait_for(batch["id"], {"running"})
    server.stop(signal.SIGKILL)
    exit_file = tmp_path / "state" / f"zookeeper-{zk_prefix}" / "driver-logs" / f"{batch['id']}.exit"
    deadline = time.monotonic() + 30
    while not exit_file.exists():
        assert time.monotonic() < deadline, "the driver's exit code was not written beside the state"
        time.sleep(0.1)
    assert exit_file.read_text().strip() == "0"

    restarted = make_server(settings)
    assert restarted.port != server.port
    view = restarted.get(f"/batches/{batch['id']}").json()
    assert view["state"] == "success", view
    assert view["appId"] == "app-20260101000000-0001"
    log = restarted.get(f"/batches/{batch['id']}/log", params={"size": -1}).json()["log"]
    assert any("ended with exit code 0 while the server was down" in line for line in log), log


def test_a_log_dir_on_tmpfs_is_warned_about_at_start_up(make_server, tmp_path: Path) -> None:
    shm = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="livy-test-"))
    try:
        server = make_server(
            {
                "livy.server.recovery.mode": "recovery",
                "livy.server.recovery.state-store.url": str(tmp_path / "store"),
                "livy.server.log-dir": str(shm),
            }
        )
        assert f"driver logs and exit codes go to {shm}, on tmpfs" in server.server_log()
    finally:
        shutil.rmtree(shm, ignore_errors=True)
