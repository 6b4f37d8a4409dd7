"""LivyHook and LivyAsyncHook against the real server over loopback (connections from the environment)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from airflow.sdk import Connection

from airflow_provider_livy.hooks.connection import LivyConfigError, LivyError, retry_delay, settings_from_connection
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from airflow_provider_livy.protocol import BatchRequestError
from airflow_provider_livy.server.security import add_user
from tests.airflow.conftest import connection_env
from tests.conftest import LivyServer, free_port


@pytest.fixture
def use_server(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the connection livy_default (or another id) at a server."""

    def use(server: LivyServer, conn_id: str = "livy_default", conn_type: str = "livy_batch", **extra: str) -> None:
        for key, value in connection_env(server, conn_id, conn_type).items():
            conn = json.loads(value) | extra
            monkeypatch.setenv(key, json.dumps(conn))

    return use


def test_settings_from_official_livy_connection_and_extras() -> None:
    official = Connection(conn_id="x", conn_type="livy", host="https://livy.example.com/gw", extra=json.dumps({"X-Token": "t"}))
    settings = settings_from_connection(official)
    assert settings.base_url == "https://livy.example.com/gw"
    assert settings.headers == {"X-Token": "t"}
    ours = Connection(
        conn_id="y",
        conn_type="livy_batch",
        host="livy",
        extra=json.dumps(
            {"endpoint_prefix": "/livy/v1", "verify": "false", "extra__livy_batch__timeout": "7", "zookeeper_hosts": "zk:2181"}
        ),
    )
    settings = settings_from_connection(ours)
    assert (settings.base_url, settings.verify, settings.timeout) == ("http://livy:8998/livy/v1", False, 7.0)
    assert settings.zookeeper_hosts == "zk:2181"
    with pytest.raises(LivyConfigError, match="'headers' is not valid JSON"):
        settings_from_connection(
            Connection(conn_id="z", conn_type="livy_batch", host="h", extra=json.dumps({"headers": "{nope"}))
        )
    with pytest.raises(LivyConfigError, match="no host"):
        settings_from_connection(Connection(conn_id="z", conn_type="livy_batch"))


def test_retry_delay_prefers_retry_after_then_backs_off() -> None:
    assert retry_delay(0, "3") == 3.0
    assert [retry_delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(20) == 30.0
    assert retry_delay(0, "Thu, 01 Jan 1970 00:00:10 GMT", now=4.0) == 6.0


def test_every_batch_endpoint(fake_server: LivyServer, job_file: str, use_server: Callable[..., None]) -> None:
    use_server(fake_server)
    hook = LivyHook()
    views = [hook.submit_batch({"file": job_file, "args": ["lines=30"], "name": f"hook-{n}"}) for n in range(5)]
    for view in views:
        fake_server.wait_for(view["id"])
    assert [b["id"] for b in hook.list_batches(page_size=2)] == [v["id"] for v in views]
    assert hook.find_batch("hook-3")["id"] == views[3]["id"]
    assert hook.get_batch_state(views[0]["id"]) == "success"
    assert hook.find_batch("no-such-batch") is None
    lines, offset = hook.read_log(views[0]["id"], 0, page_size=7)
    assert "driver line 29" in lines[-2]
    assert offset == len(lines)
    assert hook.read_log(views[0]["id"], offset) == ([], offset)
    assert hook.tail_log(views[0]["id"], 2) == lines[-2:]
    assert hook.discard_batch(views[0]["id"]) is True
    assert hook.discard_batch(views[0]["id"]) is False  # already gone counts as success
    with pytest.raises(LivyError) as err:
        hook.get_batch(views[0]["id"])
    assert err.value.status == 404 and "not found" in (err.value.msg or "")
    for view in views[1:]:
        hook.discard_batch(view["id"])
    assert fake_server.batch_ids() == []


def test_invalid_request_is_refused_before_sending(
    fake_server: LivyServer, job_file: str, use_server: Callable[..., None]
) -> None:
    use_server(fake_server)
    with pytest.raises(BatchRequestError, match="driverMemory"):
        LivyHook().submit_batch({"file": job_file, "driverMemory": "lots"})
    assert fake_server.get("/batches").json()["total"] == 0


def test_server_refusal_is_a_readable_error(fake_server: LivyServer, tmp_path: Path, use_server: Callable[..., None]) -> None:
    use_server(fake_server)
    with pytest.raises(LivyError, match=r"answered 400: Rejected, Reason: .*") as err:
        LivyHook().submit_batch({"file": "/etc/passwd"})
    assert err.value.status == 400


def test_post_waits_out_a_503_with_retry_after(make_server: Callable[..., LivyServer], job_file: str, use_server) -> None:
    server = make_server({"livy.server.session.max-sessions": "1"})
    use_server(server)
    first = server.submit(file=job_file, args=["sleep=1"])
    delays: list[float] = []

    def sleep(seconds: float) -> None:  # instead of waiting the 5 s the server asks for, wait for the slot
        delays.append(seconds)
        server.wait_for(first["id"])

    view = LivyHook(sleep=sleep).submit_batch({"file": job_file})
    assert delays and delays[0] >= 1
    assert server.batch_ids() == [view["id"]]  # the finished first batch made room; no duplicate


def test_csrf_header_and_basic_auth(make_server: Callable[..., LivyServer], job_file: str, tmp_path: Path, use_server) -> None:
    users = tmp_path / "users"
    add_user(str(users), "alice", "s3cret")
    server = make_server(
        {
            "livy.server.csrf-protection.enabled": "true",
            "livy.server.auth.type": "basic",
            "livy.server.auth.basic.users-file": str(users),
        }
    )
    use_server(server, login="alice", password="s3cret")
    hook = LivyHook()
    view = hook.submit_batch({"file": job_file})
    assert view["owner"] == "alice"
    assert hook.discard_batch(view["id"])
    use_server(server, login="alice", password="wrong")
    ok, message = LivyHook().test_connection()
    assert not ok and "401" in message


def test_official_livy_connection_type_works(fake_server: LivyServer, job_file: str, use_server) -> None:
    use_server(fake_server, conn_id="old_livy", conn_type="livy")
    hook = LivyHook("old_livy")
    view = hook.submit_batch({"file": job_file})
    assert hook.discard_batch(view["id"])


def test_test_connection(fake_server: LivyServer, use_server, monkeypatch: pytest.MonkeyPatch) -> None:
    use_server(fake_server)
    ok, message = LivyHook().test_connection()
    assert ok and "holds 0 batch" in message
    monkeypatch.setenv("AIRFLOW_CONN_NOWHERE", json.dumps({"conn_type": "livy_batch", "host": "127.0.0.1", "port": free_port()}))
    ok, message = LivyHook("nowhere", retries=1, sleep=lambda _s: None).test_connection()
    assert not ok and "failed" in message


class _Gateway(BaseHTTPRequestHandler):
    """A gateway in front of Livy that answers 503/502 a few times: our server never does this for GETs."""

    script: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        status, headers, body = self.script.pop(0) if self.script else (200, {}, b'{"id": 1, "state": "running"}')
        self.send_response(status)
        for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Gateway]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    conn = {"conn_type": "livy_batch", "host": "127.0.0.1", "port": httpd.server_address[1]}
    monkeypatch.setenv("AIRFLOW_CONN_GATEWAY", json.dumps(conn))
    _Gateway.seen = []
    yield _Gateway
    httpd.shutdown()


def test_get_retries_gateway_errors_honouring_retry_after(gateway: type[_Gateway]) -> None:
    gateway.script = [
        (503, {"Retry-After": "2"}, b'{"msg": "busy"}'),
        (502, {}, b"bad gateway"),
        (200, {}, b'{"id": 1, "state": "running"}'),
    ]
    delays: list[float] = []
    assert LivyHook("gateway", sleep=delays.append).get_batch_state(1) == "running"
    assert delays == [2.0, 1.0]
    assert len(gateway.seen) == 3


def test_post_is_not_repeated_after_an_ambiguous_failure(gateway: type[_Gateway]) -> None:
    gateway.script = [(502, {}, b"bad gateway"), (503, {}, b"no retry-after")]
    hook = LivyHook("gateway", sleep=lambda _s: None)
    for _ in range(2):
        with pytest.raises(LivyError):
            hook.submit_batch({"file": "/x/job.py"})
    assert gateway.seen == ["POST /batches", "POST /batches"]


def test_async_hook_reads_and_deletes(fake_server: LivyServer, job_file: str, use_server, gateway: type[_Gateway]) -> None:
    use_server(fake_server)
    view = fake_server.submit(file=job_file, args=["lines=12"])
    fake_server.wait_for(view["id"])

    async def scenario() -> tuple[str, list[str], int, bool, bool, str]:
        hook = LivyAsyncHook()
        state = await hook.poll_batch_state(view["id"])
        lines, offset = await hook.read_log(view["id"], 0, page_size=5)
        deleted, again = await hook.discard_batch(view["id"]), await hook.discard_batch(view["id"])
        await hook.aclose()
        gateway.script = [(504, {"Retry-After": "0"}, b"")]
        via_gateway = LivyAsyncHook("gateway")
        retried = await via_gateway.poll_batch_state(1)
        await via_gateway.aclose()
        return state, lines, offset, deleted, again, retried

    state, lines, offset, deleted, again, retried = asyncio.run(scenario())
    assert state == "success" and "driver line 11" in lines[-2] and offset == len(lines)
    assert (deleted, again) == (True, False)
    assert retried == "running" and len(gateway.seen) == 2
    assert fake_server.batch_ids() == []
