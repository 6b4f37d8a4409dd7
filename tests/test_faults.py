"""Faults around the server: a spark-submit that cannot run, a full log disk, an unwritable store.

Each must give a clear error on the batch or at start-up while the server keeps serving the rest.
The full-disk and read-only cases mount a tiny tmpfs, which needs root (they skip otherwise).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAKE_SPARK_HOME, free_port

FAULTS: list[str] = []


@contextlib.contextmanager
def tiny_tmpfs(where: Path, options: str) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_spark_submit_not_executable(make_server, job_file: str, tmp_path: Path) -> None:
    home = tmp_path / "broken-spark"
    (home / "bin").mkdir(parents=True)
    (home / "bin" / "spark-submit").write_text((FAKE_SPARK_HOME / "bin" / "spark-submit").read_text())
    (home / "bin" / "spark-submit").chmod(0o644)
    server = make_server({"livy.server.spark-home": str(home)})
    assert "is not executable" in server.server_log()
    ids = [server.submit(file=job_file)["id"] for _ in range(3)]
    for batch_id in ids:
        assert server.wait_for(batch_id, timeout=30)["state"] == "dead"
        log = server.get(f"/batches/{batch_id}/log").json()["log"]
        assert any("cannot start" in line and "Permission denied" in line for line in log), log
    assert server.get("/batches").json()["total"] == 3
    assert server.delete(f"/batches/{ids[0]}").status_code == 200
    FAULTS.append("spark-submit not executable")


def test_full_log_disk_kills_the_batch_cleanly_and_service_resumes(make_server, job_file: str, tmp_path: Path) -> None:
    logs = tmp_path / "full-logs"
    with tiny_tmpfs(logs, "size=64k"):
        server = make_server({"livy.server.log-dir": str(logs)})
        healthy = server.submit(file=job_file, args=["sleep=30"])
        server.wait_for(healthy["id"], {"running"})
        filler = logs / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 512)
        os.close(fd)
        starved = server.submit(file=job_file, args=["lines=2000"])
        view = server.wait_for(starved["id"], timeout=30)
        assert view["state"] == "dead", "a driver that cannot write its log has no trustworthy outcome"
        assert server.get(f"/batches/{healthy['id']}/state").json()["state"] == "running"
        assert server.get("/version").ok
        assert server.get("/batches").json()["total"] == 2
        filler.unlink()
        after = server.submit(file=job_file)
        assert server.wait_for(after["id"], timeout=30)["state"] == "success", "service resumes once there is room"
        assert server.delete(f"/batches/{starved['id']}").status_code == 200
        server.stop()
    FAULTS.append("log disk full")


def start_cli(settings: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "airflow_provider_livy.server"]
    for key, value in {"livy.server.port": str(free_port()), **settings}.items():
        args += ["--set", f"{key}={value}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_unwritable_store_or_log_directory_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    readonly = tmp_path / "ro"
    with tiny_tmpfs(readonly, "size=64k,ro"):
        store = start_cli(
            {
                "livy.server.recovery.mode": "recovery",
                "livy.server.recovery.state-store": "filesystem",
                "livy.server.recovery.state-store.url": f"file://{readonly}/store",
                "livy.server.log-dir": str(tmp_path / "logs"),
                "livy.server.spark-home": str(FAKE_SPARK_HOME),
            },
            tmp_path,
        )
        assert store.returncode == 2, store.stderr
        assert "livy-server:" in store.stderr
        assert str(readonly) in store.stderr
        assert "Traceback" not in store.stderr
        logs = start_cli(
            {"livy.server.log-dir": str(readonly / "logs"), "livy.server.spark-home": str(FAKE_SPARK_HOME)}, tmp_path
        )
        assert logs.returncode == 2, logs.stderr
        assert "Read-only file system" in logs.stderr
        assert "Traceback" not in logs.stderr
    FAULTS.extend(["store directory read-only", "log directory read-only"])


def test_unwritable_store_while_serving_answers_503_and_keeps_serving(make_server, job_file: str, tmp_path: Path) -> None:
    store_dir = tmp_path / "store-mount"
    with tiny_tmpfs(store_dir, "size=256k"):
        server = make_server(
            {
                "livy.server.recovery.mode": "recovery",
                "livy.server.recovery.state-store": "filesystem",
                "livy.server.recovery.state-store.url": f"file://{store_dir}",
            }
        )
        first = server.submit(file=job_file, args=["sleep=30"])
        subprocess.run(["mount", "-o", "remount,ro", str(store_dir)], check=True)
        refused = server.post("/batches", json={"file": job_file})
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert "state store" in refused.json()["msg"]
        assert server.get(f"/batches/{first['id']}/state").json()["state"] in {"starting", "running"}
        assert [s["id"] for s in server.get("/batches").json()["sessions"]] == [first["id"]], "nothing half-created"
        subprocess.run(["mount", "-o", "remount,rw", str(store_dir)], check=True)
        second = server.post("/batches", json={"file": job_file})
        assert second.status_code == 201, second.text
        assert server.delete(f"/batches/{first['id']}").status_code == 200
        server.stop()
    FAULTS.append("store directory read-only while serving")
