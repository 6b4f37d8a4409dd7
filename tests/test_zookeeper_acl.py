"""ZooKeeper access control: with livy.server.recovery.zk-state-store.auth only the server's identity may use its znodes.

One real ZooKeeper (tests.zookeeper) accepts digest and SASL DIGEST-MD5 logins; clients without
credentials, or with another identity, are refused the records while the server, its recovery,
its purge and the maintenance sweep with the server's identity keep working.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import ACL, Id, Permissions

from airflow_provider_livy.maintenance import tasks
from airflow_provider_livy.maintenance.zookeeper_sweep import KEEP_NO_AUTH, Rules, sweep_zookeeper
from airflow_provider_livy.server.config import ConfigError, build_config
from airflow_provider_livy.zookeeper_auth import ZooKeeperAuthError, new_client, parse_auth
from tests.state_store import ZooKeeperView, livy_record
from tests.zookeeper import SASL_USERS, classpath

SASL = f"sasl:DIGEST-MD5:livy:{SASL_USERS['livy']}"
INTRUDER = f"sasl:DIGEST-MD5:intruder:{SASL_USERS['intruder']}"
DIGEST = "digest:livy:digest-password-1"


@pytest.fixture
def anonymous(zookeeper) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def client_as(zookeeper, auth: str) -> KazooClient:
    client = new_client(zookeeper.hosts, parse_auth(auth))
    client.start(timeout=30)
    return client


def tree(client: KazooClient, path: str) -> Iterator[str]:
    yield path
    for name in client.get_children(path):
        yield from tree(client, f"{path}/{name}")


def acls_under(client: KazooClient, root: str) -> dict[str, list[ACL]]:
    return {path: client.get_acls(path)[0] for path in tree(client, root)}


def refused(call: Any) -> bool:
    try:
        call()
    except NoAuthError:
        return True
    return False


def session_and_batch_for(server: Any, store: ZooKeeperView, job_file: str, owner: Id) -> tuple[dict, dict]:
    """A session that ran a statement and a finished batch; every znode under the prefix is `owner`'s alone."""
    session = server.open_session(kind="pyspark")
    assert server.run(session["id"], "1 + 1")["output"]["data"]["text/plain"] == "2"
    batch = server.wait_for(server.submit(file=job_file, args=["exit=0"])["id"], {"success"})
    assert store.records("interactive")[session["id"]]["replSecret"], "the server's identity reads the record"
    acls = acls_under(store.client, f"/{store.prefix}")
    assert len(acls) >= 10, acls  # prefix, v1, two families' records, index entries and state nodes
    assert {acl for entries in acls.values() for acl in entries} == {ACL(Permissions.ALL, owner)}
    return session, batch


def test_auth_values_and_readable_errors() -> None:
    assert parse_auth("") is None
    digest = parse_auth("digest:alice:pa:ss")
    assert (digest.scheme, digest.user, digest.password) == ("digest", "alice", "pa:ss"), "a password may hold colons"
    if importlib.util.find_spec("kerberos") is None:
        with pytest.raises(ZooKeeperAuthError, match="needs the kerberos package"):
            parse_auth("sasl")
    else:
        assert parse_auth("sasl").client_options()["sasl_options"] == {"mechanism": "GSSAPI", "service": "zookeeper"}
        assert parse_auth("sasl:GSSAPI:zk").client_options()["sasl_options"]["service"] == "zk"
    assert "pa:ss" not in repr(digest), "the password is never in a repr"
    for bad in ("digest:alice", "digest::x", "kerberos:alice", "sasl:PLAIN:a:b", "sasl:DIGEST-MD5:alice"):
        with pytest.raises(ZooKeeperAuthError) as raised:
            parse_auth(bad)
        assert "digest:<user>:<password>" in str(raised.value) and bad not in str(raised.value)
    with pytest.raises(ConfigError, match=r"zk-state-store\.auth: expected one of") as raised:
        build_config([("livy.server.recovery.zk-state-store.auth", "digest:alice-without-password")])
    assert "alice-without-password" not in str(raised.value)
    config = build_config([("livy.server.recovery.zk-state-store.auth", "digest:alice:pa:ss")])
    assert config.zk_auth == "digest:alice:pa:ss" and "pa:ss" not in repr(config)


def test_with_an_identity_only_it_may_use_the_records_and_the_server_recovers_and_purges(
    make_server, zookeeper, zk_prefix: str, anonymous: KazooClient, job_file: str
) -> None:
    store = ZooKeeperView(zookeeper.hosts, zk_prefix, auth=SASL)
    settings = {**store.settings, "livy.server.session.state-retain.sec": "2s"}
    server = make_server(settings)
    assert "readable and writable by anyone" not in server.server_log(), "no open-ACL warning with an identity"
    session, batch = session_and_batch_for(server, store, job_file, Id("sasl", "livy"))
    root = f"/{zk_prefix}"
    record = f"{root}/v1/interactive/{session['id']}"

    assert refused(lambda: anonymous.get(record)), "get"
    assert refused(lambda: anonymous.set(record, b"{}")), "set"
    assert refused(lambda: anonymous.delete(record)), "delete (ZooKeeper checks the parent's ACL)"
    assert refused(lambda: anonymous.create(f"{root}/v1/interactive/99", b"{}")), "create"
    for directory in ("", "/v1", "/v1/interactive", "/v1/interactive-index", "/v1/batch"):
        assert refused(lambda d=directory: anonymous.get_children(root + d)), f"listing {directory or '/'}"
    assert zk_prefix in anonymous.get_children("/"), "the root is ZooKeeper's own, listed to anyone"
    assert anonymous.exists(record) is not None, "ZooKeeper never checks exists() against an ACL: the stat shows"
    intruder = client_as(zookeeper, INTRUDER)
    try:
        assert refused(lambda: intruder.get(record)), "another SASL user of the same ensemble"
    finally:
        intruder.stop()

    server.stop(signal.SIGTERM)  # recovery on: the driver keeps running
    while time.time() < batch["expiresAt"] + 0.2:  # the finished batch's retention runs out while the server is down
        time.sleep(0.1)
    restarted = make_server(settings, port=server.port)
    back = restarted.wait_for(session["id"], {"idle"}, path="/sessions", timeout=30)
    assert back["id"] == session["id"]
    assert restarted.run(session["id"], "2 + 3")["output"]["data"]["text/plain"] == "5"
    assert restarted.get(f"/batches/{batch['id']}").status_code == 404, "expired while the server was down"
    deadline = time.monotonic() + 30
    while batch["id"] in store.records("batch") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert batch["id"] not in store.records("batch"), "the expired batch was purged"
    assert SASL_USERS["livy"] not in restarted.server_log(), "the ZooKeeper password is never logged"
    assert restarted.delete(f"/sessions/{session['id']}").json() == {"msg": "deleted"}
    deadline = time.monotonic() + 10
    while session["id"] in store.records("interactive") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session["id"] not in store.records("interactive")
    store.close()


def test_open_records_of_apache_livy_are_recovered_and_locked_and_the_sweep_needs_the_identity(
    make_server, zookeeper, zk_prefix: str, anonymous: KazooClient, monkeypatch: pytest.MonkeyPatch, job_file: str
) -> None:
    root = f"/{zk_prefix}"
    anonymous.create(f"{root}/v1/batch/5", livy_record(5, "application_1_0005"), makepath=True)
    anonymous.create(f"{root}/v1/batch/state", json.dumps({"nextSessionId": 6}).encode())
    store = ZooKeeperView(zookeeper.hosts, zk_prefix, auth=DIGEST)
    server = make_server(store.settings)
    view = server.get("/batches/5").json()
    assert (view["state"], view["appId"]) == ("dead", "application_1_0005"), "Apache Livy's record, recovered"
    deadline = time.monotonic() + 10  # recovery re-writes a record it converted once serving
    while not refused(lambda: anonymous.get(f"{root}/v1/batch/5")) and time.monotonic() < deadline:
        time.sleep(0.1)
    digest_only = [str(acl) for acl in store.client.get_acls(f"{root}/v1/batch/5")[0]]
    assert len(digest_only) == 1 and "scheme='digest', id='livy:" in digest_only[0], digest_only
    for path in (root, f"{root}/v1", f"{root}/v1/batch", f"{root}/v1/batch/state"):
        assert refused(lambda p=path: anonymous.get(p)), f"{path} was open; the server restricted it at start"
    assert server.submit(file=job_file, args=["exit=0"])["id"] == 6, "ids go on from Livy's counter"

    # An orphan record (no server holds id 40), written with the server's identity.
    store.client.create(f"{root}/v1/batch/40", livy_record(40))
    conn = {"conn_type": "livy_batch", "host": "127.0.0.1", "port": server.port}
    params = {"livy_conn_id": "livy_acl", "min_age_seconds": 0, "zookeeper_hosts": zookeeper.hosts, "zookeeper_prefix": zk_prefix}
    no_auth = f"listing {root}/v1/batch: NoAuth: ZooKeeper denies this sweep's identity access"
    for auth, expected in (
        (None, no_auth),
        ("digest:livy:wrong-password", no_auth),  # digest logins always succeed; the ACL names another hash
        ("sasl:DIGEST-MD5:livy:wrong-password", "refused the login as sasl:DIGEST-MD5:livy; nothing was deleted"),
    ):
        monkeypatch.setenv("AIRFLOW_CONN_LIVY_ACL", json.dumps({**conn, "extra": {"zookeeper_auth": auth}}))
        report = tasks.zookeeper_sweep(params)
        assert report["deleted"] == 0, (auth, report)
        assert any(expected in message for message in report["error_messages"]), (auth, report["error_messages"])
        assert not any("wrong-password" in message for message in report["error_messages"]), "the password is never shown"
        assert f"{root}/v1/batch/40" in set(tree(store.client, root)), f"nothing deleted with {auth}"
    monkeypatch.setenv("AIRFLOW_CONN_LIVY_ACL", json.dumps({**conn, "extra": {"zookeeper_auth": DIGEST}}))
    report = tasks.zookeeper_sweep(params)
    assert report["errors"] == 0, report
    assert report["deleted_sample"] == ["batch/40"], report
    assert set(store.records("batch")) == {5, 6}, "the records the server holds stay"
    store.close()


def test_a_sweep_without_the_identity_reports_each_record_it_may_not_read(
    zookeeper, zk_prefix: str, anonymous: KazooClient
) -> None:
    """A directory left open (written before the identity) holding records with the ACL: NoAuth per record, in words."""
    root = f"/{zk_prefix}"
    anonymous.ensure_path(f"{root}/v1/interactive")
    owner = client_as(zookeeper, DIGEST)
    try:
        for session_id in (3, 4):
            owner.create(f"{root}/v1/interactive/{session_id}", livy_record(session_id))
        report = sweep_zookeeper(anonymous, zk_prefix, lambda: {"batch": set(), "session": set()}, Rules(0.0, 0.0))
        assert report.deleted == []
        assert report.kept[KEEP_NO_AUTH] == 2
        assert sorted(report.errors) == [
            f"reading {root}/v1/interactive/{n}: NoAuth: ZooKeeper denies this sweep's identity access (the connection's "
            "zookeeper_auth extra is missing or names another identity than the server's "
            "livy.server.recovery.zk-state-store.auth); kept"
            for n in (3, 4)
        ]
        assert sorted(owner.get_children(f"{root}/v1/interactive")) == ["3", "4"]
    finally:
        owner.stop()


def test_a_wrong_sasl_login_is_a_clear_error(zookeeper, zk_prefix: str) -> None:
    from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

    with pytest.raises(
        ConnectionError, match=r"refused the login as sasl:DIGEST-MD5:livy \(livy.server.recovery.zk-state-store.auth\)"
    ):
        ZooKeeperStore(zookeeper.hosts, zk_prefix, auth=parse_auth("sasl:DIGEST-MD5:livy:not-the-password"))


def test_the_readme_migration_restricts_a_whole_prefix(zookeeper, zk_prefix: str, anonymous: KazooClient) -> None:
    """README's zkCli commands: every znode under an old open prefix ends up for the identity alone."""
    root = f"/{zk_prefix}"
    for path in ("v1/batch/1", "v1/batch/state", "v1/batch-index/1_2_", "v1/interactive/3"):
        anonymous.create(f"{root}/{path}", b"{}", makepath=True)
    commands = f"addauth digest livy:digest-password-1\nsetAcl -R {root} auth::cdrwa\nquit\n"
    cli = ["java", "-cp", classpath(), "org.apache.zookeeper.ZooKeeperMain", "-server", zookeeper.hosts]
    subprocess.run(cli, input=commands, capture_output=True, text=True, timeout=60, check=True)
    owner = client_as(zookeeper, DIGEST)
    try:
        paths = list(tree(owner, root))
        assert len(paths) == 9
        assert all(refused(lambda p=path: anonymous.get(p)) for path in paths)
        assert acls_under(owner, root) == {path: owner.get_acls(f"{root}/v1/batch/1")[0] for path in paths}
    finally:
        owner.stop()


def test_without_an_identity_the_interactive_store_warns_at_start(
    zookeeper, zk_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

    for family in ("batch", "interactive"):
        ZooKeeperStore(zookeeper.hosts, zk_prefix, family=family).close()
    warnings = [r.getMessage() for r in caplog.records if "readable and writable by anyone" in r.getMessage()]
    assert len(warnings) == 1, "once, for the records that carry driver secrets"
    assert "livy.server.recovery.zk-state-store.auth" in warnings[0] and f"/{zk_prefix}" in warnings[0]


def test_an_open_record_and_its_index_entry_are_recreated_with_the_acl_on_the_next_write(
    zookeeper, zk_prefix: str, anonymous: KazooClient
) -> None:
    """As an older version left them: record and index entry open; a write that keeps the entry's name still locks both."""
    from airflow_provider_livy.server.stores.index import entry_name
    from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

    root = f"/{zk_prefix}/v1"
    old = json.loads(livy_record(8)) | {"state": "running", "createdAt": time.time() - 60, "finishedAt": None}
    anonymous.create(f"{root}/batch/8", json.dumps(old).encode(), makepath=True)
    anonymous.create(f"{root}/batch-index/{entry_name(old)}", makepath=True)
    store = ZooKeeperStore(zookeeper.hosts, zk_prefix, auth=parse_auth(DIGEST))
    try:
        assert store.scan().record_ids == {8}
        assert not refused(lambda: anonymous.get(f"{root}/batch/8")), "still open: not written yet"

        async def write() -> None:
            await store.save(old | {"appId": "application_8"})

        asyncio.run(write())
        for path in (f"{root}/batch/8", f"{root}/batch-index/{entry_name(old)}"):
            assert refused(lambda p=path: anonymous.get(p)), path
        assert json.loads(store.client.get(f"{root}/batch/8")[0])["appId"] == "application_8"
        assert store.client.get_children(f"{root}/batch-index") == [entry_name(old)]
    finally:
        store.close()
