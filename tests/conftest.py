"""Fixtures that start real parts: the Livy server as its own process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from cryptography.fernet import Fernet

from airflow_provider_livy.protocol import TERMINAL_STATES
from tests.spark_jvm import java_options
from tests.state_store import store  # noqa: F401 - a fixture for every test module
from tests.zookeeper import private_zookeeper, zk_prefix, zookeeper  # noqa: F401 - fixtures for every test module

TESTS_DIR = Path(__file__).parent
FAKE_SPARK_HOME = TESTS_DIR / "fake_spark_home"

# Airflow reads its home when first imported (and writes airflow.cfg there): point every test
# session at a private one before any test module imports airflow, so ~/airflow is never touched.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="pytest-airflow-home-"))
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(AIRFLOW_HOME / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    # One key for this process and every Airflow subprocess: otherwise whichever process first writes
    # airflow.cfg picks a key, and Variables written by a DAG run read back as garbage here.
    AIRFLOW__CORE__FERNET_KEY=Fernet.generate_key().decode(),
)
os.environ.setdefault("SPARK_SUBMIT_OPTS", java_options())  # every Spark driver the tests start, through their servers


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with real-Spark tests first, then the Airflow ones, then the rest (each group in its usual
    order). scripts/test.sh hands whole modules to two workers in this order: a long module dealt out
    last kept one worker busy for minutes while the other sat idle."""

    def weight(item: pytest.Item) -> int:
        if item.module.__name__ in spark_modules:
            return 0
        return 1 if item.module.__name__.startswith("tests.airflow.") else 2

    spark_modules = {item.module.__name__ for item in items if item.get_closest_marker("spark")}
    items.sort(key=weight)


def pytest_unconfigure() -> None:
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """The session's Airflow home with a migrated sqlite database (about 6 s, once per session)."""
    (AIRFLOW_HOME / "dags").mkdir(exist_ok=True)
    if not (AIRFLOW_HOME / "airflow.db").exists():
        airflow = Path(sys.executable).parent / "airflow"
        done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    return AIRFLOW_HOME


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LivyServer:
    """A running `livy-server` process and a small client for it."""

    url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    settings: dict[str, str]
    work_dir: Path
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["X-Requested-By"] = "tests"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url + path, timeout=30, **kwargs)

    def submit(self, **body: Any) -> dict[str, Any]:
        response = self.post("/batches", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def wait_for(
        self,
        batch_id: int,
        states: frozenset[str] | set[str] = TERMINAL_STATES,
        timeout: float = 120,
        path: str = "/batches",
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.get(f"{path}/{batch_id}").json()
            if view.get("state") in states:
                return view
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}/{batch_id} still {view.get('state')} after {timeout}s: {view}")
            time.sleep(0.1)

    def open_session(self, states: frozenset[str] | set[str] = frozenset({"idle"}), **body: Any) -> dict[str, Any]:
        """POST /sessions and wait until the session is in one of `states` (idle by default)."""
        response = self.post("/sessions", json=body)
        assert response.status_code == 201, response.text
        return self.wait_for(response.json()["id"], states, path="/sessions")

    def run(self, session_id: int, code: str, timeout: float = 60, **extra: Any) -> dict[str, Any]:
        """Run one statement through the server and wait (long polls) for its end."""
        response = self.post(f"/sessions/{session_id}/statements", json={"code": code, **extra})
        assert response.status_code == 201, response.text
        statement = response.json()
        deadline = time.monotonic() + timeout
        while statement["state"] not in ("available", "cancelled"):
            assert time.monotonic() < deadline, f"statement still {statement['state']} after {timeout}s: {statement}"
            statement = self.get(f"/sessions/{session_id}/statements/{statement['id']}", params={"wait": 5}).json()
        return statement

    def cancel_running(self, session_id: int, code: str, timeout: float = 60, **extra: Any) -> dict[str, Any]:
        """Submit a long statement, cancel it once it runs (2 s in), and wait until it is cancelled."""
        statement = self.post(f"/sessions/{session_id}/statements", json={"code": code, **extra}).json()
        self.wait_for(session_id, {"busy"}, path="/sessions", timeout=30)
        time.sleep(2)
        started = time.monotonic()
        assert self.post(f"/sessions/{session_id}/statements/{statement['id']}/cancel").json() == {"msg": "canceled"}
        while statement["state"] != "cancelled":
            assert time.monotonic() - started < timeout, statement
            statement = self.get(f"/sessions/{session_id}/statements/{statement['id']}", params={"wait": 5}).json()
        return statement

    def batch_ids(self) -> list[int]:
        return [s["id"] for s in self.get("/batches", params={"size": 10000}).json()["sessions"]]

    def server_log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def recovering_settings(work_dir: Path) -> dict[str, str]:
    """Real local Spark (one core) with recovery on a filesystem store under work_dir."""
    return {
        "livy.spark.master": "local[1]",
        "livy.server.recovery.mode": "recovery",
        "livy.server.recovery.state-store": "filesystem",
        "livy.server.recovery.state-store.url": str(work_dir / "store"),
    }


def start_server(work_dir: Path, settings: dict[str, str], port: int | None = None, timeout: float = 90) -> LivyServer:
    """Start `python -m airflow_provider_livy.server` and wait until it answers /version (a start that recovers
    records takes seconds when the machine is idle, tens of seconds under a load of 10 or more)."""
    port = port or free_port()
    conf = {
        "livy.server.host": "127.0.0.1",
        "livy.server.port": str(port),
        "livy.server.log-dir": str(work_dir / "driver-logs"),
        "livy.file.local-dir-whitelist": str(work_dir),
        **settings,
    }
    args = [sys.executable, "-m", "airflow_provider_livy.server"]
    for key, value in conf.items():
        args += ["--set", f"{key}={value}"]
    log_path = work_dir / f"server-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SPARK_LOCAL_IP": "127.0.0.1"}
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=work_dir)
    server = LivyServer(f"http://127.0.0.1:{port}", port, proc, log_path, conf, work_dir)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"livy-server exited with {proc.returncode}:\n{server.server_log()}")
        try:
            if requests.get(server.url + "/version", timeout=1).ok:
                return server
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"livy-server did not answer within {timeout}s:\n{server.server_log()}")
        time.sleep(0.05)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., LivyServer]]:
    """Start servers with given livy.conf settings; all are stopped at the end of the test."""
    servers: list[LivyServer] = []

    def make(settings: dict[str, str] | None = None, fake_spark: bool = True, **kwargs: Any) -> LivyServer:
        merged = {"livy.server.spark-home": str(FAKE_SPARK_HOME)} if fake_spark else {}
        merged.update(settings or {})
        server = start_server(tmp_path, merged, **kwargs)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
    kill_drivers(tmp_path)


def kill_drivers(work_dir: Path) -> None:
    """Drivers outlive a server with recovery on, by design; a test must not leave them behind."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "supervisor.py" in " ".join(cmdline[:4]) and any(str(work_dir) in arg for arg in cmdline):
            with contextlib.suppress(OSError, psutil.Error):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def fake_server(make_server: Callable[..., LivyServer]) -> LivyServer:
    """A server whose spark-submit is the quick fake one."""
    return make_server()


@pytest.fixture
def job_file(tmp_path: Path) -> str:
    """A file inside the whitelisted directory, for the fake spark-submit to 'run'."""
    path = tmp_path / "job.py"
    path.write_text("print('fake job')\n")
    return str(path)
