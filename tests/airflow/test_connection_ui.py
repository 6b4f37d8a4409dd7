"""The `livy_batch` connection type as Airflow 3's connections UI sees it: a real `airflow api-server`
(core API only, on a free loopback port, shared by this module) answering what the UI's form reads
(GET /ui/connections/hook_meta) and its Test button (POST /api/v2/connections/test), the latter
against a real Livy server. Starting the api-server costs about 11 s of CPU, once for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_livy.provider_info import (
    CONN_FIELDS,
    CONN_TYPE,
    HOOK_CLASS,
    SQL_CONN_TYPE,
    SQL_HOOK_CLASS,
    UI_FIELD_BEHAVIOUR,
)
from airflow_provider_livy.server.security import add_user
from tests.airflow.conftest import wait_until
from tests.conftest import LivyServer, free_port

START_TIMEOUT = 240  # seconds; about 15 on an idle 2-core machine, a minute when it is shared and loaded


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=60)

    def test_connection(self, **connection: Any) -> dict[str, Any]:
        """What the UI's Test button sends: the form's fields, extra as a JSON string."""
        body = {"connection_id": "livy_from_the_form", "conn_type": CONN_TYPE, **connection}
        response = requests.post(self.url + "/api/v2/connections/test", json=body, timeout=120)
        assert response.status_code == 200, response.text
        return response.json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/api/v2/monitor/health", timeout=2).ok
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def api_server(airflow_home: Path) -> Iterator[ApiServer]:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",  # the tests read its log
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # no login on loopback
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the Test button is off by default
    }
    log_path = airflow_home / f"api-server-{port}.log"
    airflow = Path(sys.executable).parent / "airflow"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--apps", "core", "--workers", "1"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so teardown stops any worker it forks
        )
    server = ApiServer(f"http://127.0.0.1:{port}", proc, log_path)
    try:
        wait_until(lambda: proc.poll() is not None or _healthy(server.url), START_TIMEOUT, "the api-server to answer")
        assert proc.poll() is None, f"airflow api-server exited with {proc.returncode}:\n{server.log()[-5000:]}"
        yield server
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)  # uvicorn stops at once, but the process then lingers ~15 s before it exits
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_the_connection_form_has_our_type_and_fields(api_server: ApiServer) -> None:
    response = api_server.get("/ui/connections/hook_meta")
    assert response.status_code == 200, response.text
    by_type = {entry["connection_type"]: entry for entry in response.json()}
    ours = by_type[CONN_TYPE]
    assert ours["hook_class_name"] == HOOK_CLASS
    assert "airflow-provider-livy" in ours["hook_name"]
    # the official provider keeps its own `livy` type next to ours: both are installed here
    assert by_type["livy"]["hook_class_name"] == "airflow.providers.apache.livy.hooks.livy.LivyHook"
    # Spark SQL for Airflow's SQL operators has its own type, with the same fields plus the sessions' Spark conf
    assert by_type[SQL_CONN_TYPE]["hook_class_name"] == SQL_HOOK_CLASS
    assert set(by_type[SQL_CONN_TYPE]["extra_fields"]) == set(by_type[CONN_TYPE]["extra_fields"]) | {"session_conf"}

    extra = ours["extra_fields"]
    assert set(extra) == set(CONN_FIELDS)
    for name, field in CONN_FIELDS.items():
        assert extra[name]["schema"]["title"] == field["label"], name
        assert extra[name]["description"] == field["description"], name
        assert extra[name]["value"] == field["schema"].get("default"), name
    assert extra["auth_kind"]["schema"]["enum"] == ["basic", "kerberos", "none", "class"]
    assert {"keytab", "principal", "service_principal"} <= set(extra), "the Kerberos fields"
    assert {"verify", "auth_kind", "headers", "endpoint_prefix", "zookeeper_hosts", "zookeeper_prefix"} <= set(extra)

    standard = ours["standard_fields"]
    assert standard["url_schema"]["title"] == UI_FIELD_BEHAVIOUR["relabeling"]["schema"]
    for field, placeholder in UI_FIELD_BEHAVIOUR["placeholders"].items():
        key = "url_schema" if field == "schema" else field
        assert standard[key]["placeholder"] == placeholder, field
        assert standard[key]["hidden"] is False, field

    providers = api_server.get("/api/v2/providers?limit=1000").json()["providers"]
    assert "airflow-provider-livy" in {p["package_name"] for p in providers}


@pytest.fixture
def livy_with_users(make_server: Callable[..., LivyServer], tmp_path: Path, job_file: str) -> LivyServer:
    """A Livy server with basic auth and one batch, so a successful test has something to count."""
    users = tmp_path / "users"
    add_user(str(users), "alice", "s3cret")
    server = make_server({"livy.server.auth.type": "basic", "livy.server.auth.basic.users-file": str(users)})
    server.session.auth = ("alice", "s3cret")
    server.submit(file=job_file)
    return server


def test_the_test_button_against_a_real_server(api_server: ApiServer, livy_with_users: LivyServer) -> None:
    form = {"host": "127.0.0.1", "port": livy_with_users.port, "login": "alice"}
    extra = json.dumps({"auth_kind": "basic", "timeout": 10, "headers": {"X-Team": "data"}})

    ok = api_server.test_connection(**form, password="s3cret", extra=extra)
    assert ok == {"status": True, "message": f"Connected to {livy_with_users.url}: the server holds 1 batch(es)"}

    wrong = api_server.test_connection(**form, password="wrong", extra=extra)
    assert wrong["status"] is False
    assert wrong["message"].startswith(f"Livy GET {livy_with_users.url}/batches")
    assert "answered 401" in wrong["message"]

    bad_extra = api_server.test_connection(**form, password="s3cret", extra=json.dumps({"headers": "{not json"}))
    assert bad_extra == {"status": False, "message": bad_extra["message"]}
    assert "connection extra 'headers' is not valid JSON" in bad_extra["message"]

    dead_port = free_port()
    dead = api_server.test_connection(host="127.0.0.1", port=dead_port)
    assert dead["status"] is False
    assert f"Livy GET http://127.0.0.1:{dead_port}/batches" in dead["message"] and "Connection refused" in dead["message"]
    # the access log line of the 4th test is written after its answer: once it is there, so is anything before it
    wait_until(lambda: api_server.log().count("path=/api/v2/connections/test") == 4, 30, "the api-server to log 4 tests")
    log = api_server.log().splitlines()
    retried = [line for line in log if f"127.0.0.1:{dead_port}/batches" in line and "retry 1 of" in line]
    assert retried == [], "the Test button answers after one try, without the ~15 s of backoff a task would wait"
    assert livy_with_users.batch_ids() != [], "testing a connection changes nothing on the server"
