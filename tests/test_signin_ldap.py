"""LDAP sign-in against a real OpenLDAP (tests/ldap_server.py): binds as the user, the bind cache,
injection, and the directory going away."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import LivyServer
from tests.ldap_server import BASE_DN, PEOPLE, Directory, ldap_directory, make_certificates

INJECTION = "*)(uid=*"


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    with ldap_directory(tmp_path_factory.mktemp("ldap")) as made:
        yield made


@pytest.fixture
def ldap_server(make_server: Callable[..., LivyServer], directory: Directory) -> Callable[..., LivyServer]:
    def make(**settings: str) -> LivyServer:
        return make_server(
            {
                "livy.server.auth.type": "ldap",
                "livy.server.auth.ldap.url": directory.url,
                "livy.server.auth.ldap.base-dn": BASE_DN,
                "livy.server.auth.ldap.timeout": "2s",
                "livy.server.access-control.enabled": "true",
                "livy.server.csrf-protection.enabled": "true",
                "livy.server.auth.failures.max": "1000",  # every client here is 127.0.0.1
                **settings,
            }
        )

    return make


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(), "X-Requested-By": "tests"}


def user_dn(user: str) -> str:
    return f"uid={user},{BASE_DN}"


def test_right_password_signs_in_and_a_poller_binds_once(ldap_server, directory: Directory, job_file: str) -> None:
    server = ldap_server()
    created = requests.post(
        server.url + "/batches",
        json={"file": job_file, "args": ["sleep=30"]},
        headers=basic("alice", PEOPLE["alice"]),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    assert created.json()["owner"] == "alice"
    before = directory.binds().count(user_dn("alice"))
    for _ in range(40):
        polled = requests.get(
            server.url + f"/batches/{created.json()['id']}/state", headers=basic("alice", PEOPLE["alice"]), timeout=10
        )
        assert polled.status_code == 200
    assert directory.binds().count(user_dn("alice")) == before, "40 polls within the cache's lifetime bind no more"
    assert before == 1, "the creating request bound once"
    bob = requests.get(server.url + f"/batches/{created.json()['id']}", headers=basic("bob", PEOPLE["bob"]), timeout=10)
    assert bob.status_code == 403, "access control applies to directory users as to any"
    assert requests.delete(
        server.url + f"/batches/{created.json()['id']}", headers=basic("alice", PEOPLE["alice"]), timeout=30
    ).ok


def test_wrong_password_unknown_user_and_empty_password_get_401(ldap_server, directory: Directory) -> None:
    server = ldap_server()
    for user, password in (("alice", "wrong"), ("nobody", "whatever"), ("alice", PEOPLE["bob"])):
        refused = requests.get(server.url + "/batches", headers=basic(user, password), timeout=10)
        assert refused.status_code == 401, (user, password)
        assert refused.headers["WWW-Authenticate"].startswith("Basic")
        assert refused.json()["msg"] == "Authentication required"
    binds = len(directory.binds())
    empty = requests.get(server.url + "/batches", headers=basic("alice", ""), timeout=10)
    assert empty.status_code == 401, "an empty password is an anonymous bind in LDAP, which succeeds: refused first"
    assert len(directory.binds()) == binds, "and no bind was tried"


@pytest.mark.parametrize("settings", [{}, {"livy.server.auth.ldap.user-filter": "(&(objectClass=inetOrgPerson)(uid={user}))"}])
def test_injection_in_the_user_name_binds_as_nobody(ldap_server, directory: Directory, settings: dict[str, str]) -> None:
    server = ldap_server(**settings)
    assert requests.get(server.url + "/batches", headers=basic("alice", PEOPLE["alice"]), timeout=10).status_code == 200
    before = len(directory.binds())
    for user in (INJECTION, "alice)(|(uid=*", "*", "alice\\", "uid=alice,ou=people,dc=example,dc=com", "a" * 300, "alice\x00"):
        refused = requests.get(server.url + "/batches", headers=basic(user, PEOPLE["alice"]), timeout=10)
        assert refused.status_code in (400, 401), (user, refused.status_code)
        assert refused.json()["msg"]
    tried = directory.binds()[before:]
    assert not [dn for dn in tried if dn in {user_dn(name) for name in PEOPLE}], f"a bind as a real person: {tried}"


def test_directory_down_gives_503_then_recovers(ldap_server, directory: Directory) -> None:
    server = ldap_server()
    try:
        directory.stop()
        down = requests.get(server.url + "/batches", headers=basic("bob", PEOPLE["bob"]), timeout=30)
        assert down.status_code == 503, down.text
        assert "cannot be reached" in down.json()["msg"]
    finally:
        directory.start()
    assert requests.get(server.url + "/batches", headers=basic("bob", PEOPLE["bob"]), timeout=10).status_code == 200


def tls_settings(directory: Directory, how: str) -> dict[str, str]:
    if how == "starttls":
        return {"livy.server.auth.ldap.enablestarttls": "true"}
    return {"livy.server.auth.ldap.url": directory.ldaps_url}


@pytest.mark.parametrize("how", ["starttls", "ldaps"])
def test_tls_to_the_directory_checks_its_certificate(ldap_server, directory: Directory, how: str) -> None:
    tls = {"livy.server.auth.ldap.ca-file": str(directory.ca_file)}
    tls |= (
        {"livy.server.auth.ldap.enablestarttls": "true"}
        if how == "starttls"
        else {"livy.server.auth.ldap.url": directory.ldaps_url}
    )
    server = ldap_server(**tls)
    assert requests.get(server.url + "/batches", headers=basic("bob", PEOPLE["bob"]), timeout=10).status_code == 200
    assert directory.bind_strengths()[user_dn("bob")][-1] > 0, "the password went over TLS"


@pytest.mark.parametrize("how", ["starttls", "ldaps"])
def test_a_directory_certificate_from_another_ca_is_refused(ldap_server, directory: Directory, tmp_path: Path, how: str) -> None:
    other_ca, _cert, _key = make_certificates(tmp_path, "other")
    tls = {"livy.server.auth.ldap.ca-file": str(other_ca)}
    tls |= (
        {"livy.server.auth.ldap.enablestarttls": "true"}
        if how == "starttls"
        else {"livy.server.auth.ldap.url": directory.ldaps_url}
    )
    server = ldap_server(**tls)
    before = len(directory.binds())
    refused = requests.get(server.url + "/batches", headers=basic("bob", PEOPLE["bob"]), timeout=30)
    assert refused.status_code == 503, refused.text
    assert "certificate" in refused.json()["msg"].lower() or "tls" in refused.json()["msg"].lower(), refused.text
    assert len(directory.binds()) == before, "no bind, so no password, to a directory that could not prove itself"
