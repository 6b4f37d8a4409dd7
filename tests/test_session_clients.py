"""Third-party Livy clients, unmodified, against our server on real local Spark.

sparkmagic 0.23 (its SparkController, as a notebook kernel drives it) and pylivy 0.8 (`livy` on PyPI)
run in a virtualenv of their own (tests/client_venv.py: made by scripts/setup.sh --tests, or here on
first use; sparkmagic needs Debian's libkrb5-dev, which setup installs).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.client_venv import client_python
from tests.conftest import TESTS_DIR, LivyServer, kill_drivers, start_server

pytestmark = pytest.mark.spark

SCRIPT = TESTS_DIR / "session_clients" / "clients.py"


@pytest.fixture(scope="module")
def spark_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivyServer]:
    work_dir = tmp_path_factory.mktemp("clients")
    server = start_server(work_dir, {"livy.spark.master": "local[1]"})
    yield server
    server.stop()
    kill_drivers(work_dir)


def run_client(name: str, server: LivyServer) -> dict:
    done = subprocess.run([str(client_python()), str(SCRIPT), name, server.url], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_version_looks_like_a_livy_pylivy_accepts(spark_server: LivyServer) -> None:
    version = spark_server.get("/version").json()["version"]
    parts = [int(p) for p in version.split(".")[:3]]
    assert len(parts) == 3 and parts >= [0, 5, 0], version


def test_sparkmagic_runs_cells_and_sql_then_deletes(spark_server: LivyServer) -> None:
    seen = run_client("sparkmagic", spark_server)
    assert seen["ok"][0] is True and seen["ok"][1].strip() == "10", seen
    assert seen["failed"][0] is False and "IndexError" in seen["failed"][1], seen
    assert seen["sql"] == [{"one": 1, "letter": "a"}], seen
    assert spark_server.get(f"/sessions/{seen['session_id']}").status_code == 404, "sparkmagic deleted its session"


def test_pylivy_runs_downloads_and_downloads_sql(spark_server: LivyServer) -> None:
    seen = run_client("pylivy", spark_server)
    assert seen["run"].strip() == "2", seen
    assert seen["download"] == [{"n": 1, "letter": "a"}, {"n": 2, "letter": "b"}], seen
    assert seen["download_sql"] == [{"two": 2, "letter": "b"}], seen
    for key in ("session_id", "sql_session_id"):
        assert spark_server.get(f"/sessions/{seen[key]}").status_code == 404, "pylivy closed its session"


def test_sparkmagic_runs_a_scala_cell(spark_server: LivyServer) -> None:
    seen = run_client("sparkmagic-scala", spark_server)
    assert seen["ok"][0] is True, seen
    assert "val x: Int = 42" in seen["ok"][1] and seen["ok"][1].strip().endswith(": Long = 10"), seen
    assert seen["failed"][0] is False and "type mismatch" in seen["failed"][1], seen
    assert spark_server.get(f"/sessions/{seen['session_id']}").status_code == 404, "sparkmagic deleted its session"
