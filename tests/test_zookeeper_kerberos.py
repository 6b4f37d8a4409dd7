"""ZooKeeper access control with Kerberos: livy.server.recovery.zk-state-store.auth = sasl (GSSAPI).

A real MIT KDC (tests/kerberos.py, one per module) and a ZooKeeper of this module's own that logs in as
zookeeper/localhost from a keytab. The server's identity is svc@KRBTEST.COM from a kinit'ed ticket cache.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from kazoo.security import Id

from tests import kerberos
from tests.kerberos import REALM, Realm
from tests.state_store import ZooKeeperView
from tests.test_zookeeper_acl import refused, session_and_batch_for
from tests.zookeeper import KERBEROS_PRINCIPAL, KerberosLogin, ZooKeeperServer

pytest.importorskip("kerberos", reason="kazoo's GSSAPI (pure-sasl) needs the kerberos package")

realm = kerberos.realm  # the fixture, for this module


@pytest.fixture(scope="module")
def kerberos_zookeeper(realm: Realm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    keytab = realm.tmpdir / "zookeeper.keytab"
    realm.k5.addprinc(KERBEROS_PRINCIPAL)
    realm.k5.extract_keytab(KERBEROS_PRINCIPAL, str(keytab))
    login = KerberosLogin(f"{KERBEROS_PRINCIPAL}@{REALM}", keytab, Path(realm.env["KRB5_CONFIG"]))
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper-kerberos"), kerberos=login).start()
    yield server
    server.stop()


def test_with_sasl_gssapi_only_the_servers_principal_may_use_its_znodes_through_a_restart(
    make_server,
    realm: Realm,
    kerberos_zookeeper: ZooKeeperServer,
    zk_prefix: str,
    job_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{realm.kinit('svc')}")  # the server's and this view's identity
    store = ZooKeeperView(kerberos_zookeeper.hosts, zk_prefix, auth="sasl")
    server = make_server(store.settings)
    session, batch = session_and_batch_for(server, store, job_file, Id("sasl", f"svc@{REALM}"))
    root = f"/{zk_prefix}"
    record = f"{root}/v1/interactive/{session['id']}"

    anonymous = KazooClient(hosts=kerberos_zookeeper.hosts)
    anonymous.start(timeout=30)
    try:
        assert refused(lambda: anonymous.get(record)), "get"
        assert refused(lambda: anonymous.set(record, b"{}")), "set"
        assert refused(lambda: anonymous.delete(record)), "delete"
        assert refused(lambda: anonymous.get_children(f"{root}/v1/batch")), "listing"
    finally:
        anonymous.stop()
        anonymous.close()

    server.stop(signal.SIGTERM)  # recovery on: the session's driver keeps running
    restarted = make_server(store.settings, port=server.port)
    assert restarted.wait_for(session["id"], {"idle"}, path="/sessions", timeout=30)["id"] == session["id"]
    assert restarted.run(session["id"], "2 + 3")["output"]["data"]["text/plain"] == "5"
    assert restarted.get(f"/batches/{batch['id']}").json()["state"] == "success", "the batch, recovered"
    assert restarted.delete(f"/sessions/{session['id']}").json() == {"msg": "deleted"}
    deadline = time.monotonic() + 10
    while session["id"] in store.records("interactive") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert session["id"] not in store.records("interactive"), "the principal deletes what it created"
    store.close()
