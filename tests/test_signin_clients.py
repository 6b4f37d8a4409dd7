"""Third-party clients unmodified, over Kerberos, against a server with Kerberos sign-in: sparkmagic
("auth": "Kerberos"), pylivy with requests-gssapi, the official provider's hook with auth_type, and curl.

Sessions run the real REPL as plain Python (the fake spark-submit): what is tested is the sign-in, the
clients' sessions and statements run for real on Spark in tests/test_session_clients.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
import requests_gssapi
from airflow.providers.apache.livy.hooks.livy import BatchState
from airflow.providers.apache.livy.hooks.livy import LivyHook as OfficialLivyHook

from tests import kerberos
from tests.conftest import LivyServer
from tests.kerberos import Realm, local_url
from tests.test_session_clients import run_client

realm = kerberos.realm  # the fixtures, for this module
kerberos_server = kerberos.kerberos_server


def alice_server(kerberos_server, realm: Realm, monkeypatch: pytest.MonkeyPatch, real_spark: bool = False) -> LivyServer:
    """pylivy sends no X-Requested-By, so CSRF protection is off here, as it must be for pylivy on Apache Livy."""
    monkeypatch.setenv("KRB5CCNAME", f"FILE:{realm.kinit('alice')}")
    settings = {"livy.server.csrf-protection.enabled": "false", "livy.spark.master": "local[1]"}
    server = kerberos_server(fake_spark=not real_spark, **settings)
    return dataclasses.replace(server, url=local_url(server))


@pytest.mark.spark
def test_sparkmagic_signs_in_with_kerberos(kerberos_server, realm: Realm, monkeypatch: pytest.MonkeyPatch) -> None:
    """sparkmagic checks for a SparkSession when its session starts: a real Spark driver."""
    seen = run_client("sparkmagic-kerberos", alice_server(kerberos_server, realm, monkeypatch, real_spark=True))
    assert seen["ok"][0] is True and "42" in seen["ok"][1], seen


def test_pylivy_signs_in_with_kerberos(kerberos_server, realm: Realm, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = run_client("pylivy-kerberos", alice_server(kerberos_server, realm, monkeypatch))
    assert seen["run"].strip() == "42", seen


def test_official_hook_and_curl_sign_in_with_kerberos(
    kerberos_server, realm: Realm, job_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = alice_server(kerberos_server, realm, monkeypatch)
    conn = {"conn_type": "livy", "host": "localhost", "port": server.port}
    monkeypatch.setenv("AIRFLOW_CONN_LIVY_KERBEROS", json.dumps(conn))
    hook = OfficialLivyHook(livy_conn_id="livy_kerberos", auth_type=requests_gssapi.HTTPSPNEGOAuth)
    batch_id = hook.post_batch(file=job_file, args=["sleep=0"])
    assert hook.get_batch(batch_id)["owner"] == "alice"
    server.session.auth = requests_gssapi.HTTPSPNEGOAuth()
    server.wait_for(batch_id)
    assert hook.get_batch_state(batch_id) == BatchState.SUCCESS

    def curl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=60, check=False
        )

    listed = curl("--negotiate", "-u", ":", server.url + "/batches")
    body, status = listed.stdout.rsplit("\n", 1)
    assert status == "200", listed
    assert batch_id in [b["id"] for b in json.loads(body)["sessions"]]
    refused = curl(server.url + "/batches")
    assert refused.stdout.rsplit("\n", 1)[1] == "401"
