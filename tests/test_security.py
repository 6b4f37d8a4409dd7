"""Authentication, access control, impersonation, CSRF and credential hygiene, over loopback HTTP."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from airflow_provider_livy.server.auth.basic import read_users_file
from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.security import AccessDenied, AccessPolicy, ImpersonationDisabled
from tests.conftest import LivyServer

PASSWORDS = {
    "alice": "alice-Secret-1",
    "bob": "bob-Secret-2",
    "carol": "carol-Secret-3",
    "victor": "victor-Secret-4",
    "svc": "svc-Secret-5",
    "mallory": "mallory-Secret-6",
}


def add_user(users_file: Path, user: str, password: str) -> None:
    """Through the documented command, as an operator would."""
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_livy.server.security", "add-user", str(users_file), user, "--password-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return write_users_file(tmp_path)


def write_users_file(directory: Path) -> Path:
    """The users file in the command's format, with bcrypt's cheapest cost: the server checks it as any
    other, and each test's server pays 1 ms a check, not 250 ms (the command itself has its own test)."""
    import bcrypt

    path = directory / "users"
    hashes = {user: bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode() for user, password in PASSWORDS.items()}
    path.write_text("".join(f"{user}:{hashed}\n" for user, hashed in hashes.items()))
    path.chmod(0o600)
    return path


@pytest.fixture
def secure_server(make_server: Callable[..., LivyServer], users_file: Path) -> Callable[..., LivyServer]:
    def make(**settings: str) -> LivyServer:
        return make_server(
            {
                "livy.server.auth.type": "basic",
                "livy.server.auth.basic.users-file": str(users_file),
                "livy.server.access-control.enabled": "true",
                "livy.superusers": "carol",
                "livy.server.access-control.view-users": "victor",
                "livy.server.access-control.allowed-users": "alice,bob,svc",
                "livy.server.csrf-protection.enabled": "true",
                # every client here is 127.0.0.1, and these tests send wrong credentials on purpose
                "livy.server.auth.failures.max": "1000",
                **settings,
            }
        )

    return make


def as_user(user: str) -> requests.Session:
    session = requests.Session()
    session.auth = (user, PASSWORDS[user])
    session.headers["X-Requested-By"] = user
    return session


def test_users_file_command_adds_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "users"
    add_user(path, "alice", "first")
    add_user(path, "bob", "second")
    add_user(path, "alice", "third")
    users = read_users_file(str(path))
    assert sorted(users) == ["alice", "bob"]
    assert path.stat().st_mode & 0o077 == 0, "the users file must be readable by its owner only"
    import bcrypt

    assert bcrypt.checkpw(b"third", users["alice"])
    assert not bcrypt.checkpw(b"first", users["alice"])


def test_every_endpoint_but_version_needs_credentials(secure_server, job_file: str) -> None:
    server = secure_server()
    alice = as_user("alice")
    created = alice.post(server.url + "/batches", json={"file": job_file, "name": "mine", "args": ["sleep=300"]}, timeout=30)
    assert created.status_code == 201, created.text
    batch_id = created.json()["id"]
    bad_headers = [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"alice:wrong").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"nobody:" + PASSWORDS["alice"].encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(b"alice").decode()},
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Bearer " + PASSWORDS["alice"]},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
    ]
    calls = [
        ("GET", "/batches"),
        ("POST", "/batches"),
        ("GET", f"/batches/{batch_id}"),
        ("GET", "/batches/mine"),
        ("GET", f"/batches/{batch_id}/state"),
        ("GET", f"/batches/{batch_id}/log"),
        ("DELETE", f"/batches/{batch_id}"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no-such-route"),
    ]
    # the session routes sit behind the same gate: none and a wrong password suffice (each check costs a bcrypt)
    session_calls = [
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", "/sessions/0"),
        ("GET", "/sessions/0/state"),
        ("GET", "/sessions/0/log"),
        ("DELETE", "/sessions/0"),
        ("GET", "/sessions/0/statements"),
        ("POST", "/sessions/0/statements"),
        ("GET", "/sessions/0/statements/0"),
        ("POST", "/sessions/0/statements/0/cancel"),
        ("POST", "/sessions/0/completion"),
    ]
    for method, path in calls + session_calls:
        for headers in bad_headers if (method, path) in calls else bad_headers[:2]:
            response = requests.request(
                method, server.url + path, headers={"X-Requested-By": "x", **headers}, json={"file": job_file}, timeout=30
            )
            assert response.status_code == 401, (method, path, headers)
            assert response.json() == {"msg": "Authentication required"}
            assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(server.url + "/version", timeout=10).status_code == 200
    assert alice.get(server.url + f"/batches/{batch_id}/state", timeout=10).json()["state"] in {"starting", "running"}
    assert alice.get(server.url + "/batches", timeout=10).json()["total"] == 1


def test_users_cannot_see_or_delete_each_others_batches(secure_server, job_file: str) -> None:
    server = secure_server()
    alice, bob, carol, victor = (as_user(u) for u in ("alice", "bob", "carol", "victor"))
    a = alice.post(server.url + "/batches", json={"file": job_file, "name": "alices", "args": ["sleep=30"]}, timeout=30).json()
    b = bob.post(server.url + "/batches", json={"file": job_file, "name": "bobs", "args": ["sleep=30"]}, timeout=30).json()
    assert (a["owner"], b["owner"]) == ("alice", "bob")

    for path in (f"/batches/{a['id']}", "/batches/alices", f"/batches/{a['id']}/state", f"/batches/{a['id']}/log"):
        response = bob.get(server.url + path, timeout=10)
        assert response.status_code == 403, path
        assert response.json()["msg"] == f"User 'bob' is not allowed to view batch {a['id']}."
    for who in (bob, victor):
        refused = who.delete(server.url + f"/batches/{a['id']}", timeout=10)
        assert refused.status_code == 403
        assert "not allowed to delete" in refused.json()["msg"]
    assert alice.get(server.url + f"/batches/{a['id']}/state", timeout=10).json()["state"] in {"starting", "running"}

    bobs_list = bob.get(server.url + "/batches", timeout=10).json()
    assert (bobs_list["total"], [s["id"] for s in bobs_list["sessions"]]) == (1, [b["id"]])
    assert bob.get(server.url + "/batches", params={"from": 1}, timeout=10).json()["sessions"] == []
    for viewer in (victor, carol):
        everything = viewer.get(server.url + "/batches", timeout=10).json()
        assert [s["id"] for s in everything["sessions"]] == [a["id"], b["id"]]
        assert viewer.get(server.url + f"/batches/{b['id']}/log", timeout=10).status_code == 200

    assert carol.delete(server.url + f"/batches/{b['id']}", timeout=30).status_code == 200, "superusers may delete any batch"
    assert alice.delete(server.url + f"/batches/{a['id']}", timeout=30).status_code == 200
    assert carol.get(server.url + "/batches", timeout=10).json()["total"] == 0


def test_users_outside_allowed_users_are_refused(secure_server) -> None:
    server = secure_server()
    mallory = as_user("mallory")
    for path in ("/batches", "/batches/0/state", "/metrics"):
        response = mallory.get(server.url + path, timeout=10)
        assert response.status_code == 403, path
        assert response.json()["msg"] == "User 'mallory' is not allowed to use this server."


def test_proxy_user_refused_when_impersonation_is_off(secure_server, job_file: str) -> None:
    server = secure_server()
    alice = as_user("alice")
    response = alice.post(server.url + "/batches", json={"file": job_file, "proxyUser": "alice"}, timeout=10)
    assert response.status_code == 400
    assert "livy.impersonation.enabled" in response.json()["msg"]
    plain = alice.post(server.url + "/batches", json={"file": job_file}, timeout=10).json()
    assert plain["proxyUser"] is None
    assert [s["id"] for s in alice.get(server.url + "/batches", timeout=10).json()["sessions"]] == [plain["id"]]


def test_proxy_user_only_for_those_who_may_impersonate(secure_server, job_file: str) -> None:
    server = secure_server(**{"livy.impersonation.enabled": "true", "livy.server.access-control.allowed-impersonators": "svc"})
    alice, svc, carol = (as_user(u) for u in ("alice", "svc", "carol"))
    refused = alice.post(server.url + "/batches", json={"file": job_file, "proxyUser": "bob"}, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["msg"] == "User 'alice' is not allowed to impersonate 'bob'."
    assert alice.post(server.url + "/batches", json={"file": job_file, "proxyUser": "alice"}, timeout=10).status_code == 201
    defaulted = alice.post(server.url + "/batches", json={"file": job_file}, timeout=10).json()
    assert defaulted["proxyUser"] == "alice", "with impersonation on, a job runs as its caller (as in Livy)"
    by_service = svc.post(server.url + "/batches", json={"file": job_file, "proxyUser": "bob"}, timeout=10).json()
    assert (by_service["owner"], by_service["proxyUser"]) == ("svc", "bob")
    assert carol.post(server.url + "/batches", json={"file": job_file, "proxyUser": "dave"}, timeout=10).status_code == 201
    bad_type = alice.post(server.url + "/batches", json={"file": job_file, "proxyUser": ["bob"]}, timeout=10)
    assert bad_type.status_code == 400
    assert carol.get(server.url + "/batches", timeout=10).json()["total"] == 4
    # the same rules for interactive sessions, whose driver then runs as the proxy user
    refused = alice.post(server.url + "/sessions", json={"proxyUser": "bob"}, timeout=10)
    assert (refused.status_code, refused.json()["msg"]) == (403, "User 'alice' is not allowed to impersonate 'bob'.")
    session = svc.post(server.url + "/sessions", json={"kind": "sql", "proxyUser": "bob"}, timeout=10).json()
    assert (session["owner"], session["proxyUser"]) == ("svc", "bob")
    assert alice.get(server.url + f"/sessions/{session['id']}", timeout=10).status_code == 403
    assert alice.post(server.url + "/sessions", json={}, timeout=10).json()["proxyUser"] == "alice"


def test_impersonation_matrix() -> None:
    policy = AccessPolicy.from_config(
        ServerConfig(impersonation=True, superusers=("root",), allowed_impersonators=("svc",), access_control=True)
    )
    assert policy.proxy_user(None, "alice") == "alice"
    assert policy.proxy_user("alice", "alice") == "alice"
    assert policy.proxy_user("bob", "svc") == "bob"
    assert policy.proxy_user("bob", "root") == "bob"
    assert policy.proxy_user("bob", None) == "bob", "no authentication: no identity to check against (as Livy)"
    with pytest.raises(AccessDenied):
        policy.proxy_user("bob", "alice")
    with pytest.raises(ImpersonationDisabled):
        AccessPolicy.from_config(ServerConfig()).proxy_user("bob", "alice")
    assert AccessPolicy.from_config(ServerConfig()).proxy_user(None, "alice") is None


def test_csrf_refuses_delete_without_header_and_keeps_the_batch(secure_server, job_file: str) -> None:
    server = secure_server()
    alice = as_user("alice")
    batch = alice.post(server.url + "/batches", json={"file": job_file, "args": ["sleep=30"]}, timeout=30).json()
    bare = requests.delete(server.url + f"/batches/{batch['id']}", auth=("alice", PASSWORDS["alice"]), timeout=10)
    assert bare.status_code == 400
    assert "CSRF" in bare.json()["msg"]
    bare_post = requests.post(server.url + "/batches", json={"file": job_file}, auth=("alice", PASSWORDS["alice"]), timeout=10)
    assert bare_post.status_code == 400
    assert alice.get(server.url + "/batches", timeout=10).json()["total"] == 1
    assert alice.get(server.url + f"/batches/{batch['id']}/state", timeout=10).json()["state"] in {"starting", "running"}


def test_credentials_never_reach_the_logs(secure_server, job_file: str) -> None:
    server = secure_server()
    alice = as_user("alice")
    batch = alice.post(server.url + "/batches", json={"file": job_file}, timeout=30).json()
    for user, password in PASSWORDS.items():
        requests.get(server.url + "/batches", auth=(user, password + "-wrong"), timeout=10)
        requests.get(server.url + "/batches", auth=(user, password), timeout=10)
    driver_log = alice.get(server.url + f"/batches/{batch['id']}/log", params={"from": 0, "size": -1}, timeout=10).json()
    server_log = server.server_log()
    texts = [server_log, "\n".join(driver_log["log"])]
    for user, password in PASSWORDS.items():
        secrets = (password, password + "-wrong", base64.b64encode(f"{user}:{password}".encode()).decode())
        for secret in secrets:
            assert not any(secret in text for text in texts), f"{secret!r} leaked into a log"
