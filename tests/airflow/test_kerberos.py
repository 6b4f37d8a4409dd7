"""The hooks, the triggers and the operators signing in with Kerberos (auth_kind = kerberos) to a server
with Kerberos sign-in, against the real KDC of tests/kerberos.py; a Kerberos failure in words."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

import gssapi
import pytest
import requests
import requests_gssapi

from airflow_provider_livy.example_jobs import PI_JOB
from airflow_provider_livy.hooks import kerberos_auth
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.livy_async import LivyAsyncHook
from tests import kerberos
from tests.airflow.conftest import DagRunner
from tests.conftest import LivyServer
from tests.kerberos import REALM, Realm, local_url

realm = kerberos.realm  # the fixtures, for this module
kerberos_server = kerberos.kerberos_server


def kerberos_connection(server: LivyServer, **extra: str) -> dict[str, str]:
    conn = {"conn_type": "livy_batch", "host": "localhost", "port": server.port, "extra": {"auth_kind": "kerberos", **extra}}
    return {"AIRFLOW_CONN_LIVY_DEFAULT": json.dumps(conn)}


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    def point(server: LivyServer, ccache: Path, **extra: str) -> None:
        for key, value in kerberos_connection(server, **extra).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("KRB5CCNAME", f"FILE:{ccache}")

    return point


def test_hooks_sign_in_from_the_ticket_cache_and_from_a_keytab(kerberos_server, realm: Realm, use, job_file: str) -> None:
    server = kerberos_server()
    use(server, realm.kinit("alice"))
    hook = LivyHook()
    ok, message = hook.test_connection()
    assert ok, message
    batch = hook.submit_batch({"file": job_file, "args": ["sleep=0"]})
    assert batch["owner"] == "alice"

    async def read_async() -> str:
        async_hook = LivyAsyncHook()
        try:
            return (await async_hook.get_batch(batch["id"]))["owner"]
        finally:
            await async_hook.aclose()

    assert asyncio.run(read_async()) == "alice", "the async hook (and so the triggers) signs in the same way"
    # a keytab in the extra, and a worker with no tickets at all
    use(server, realm.tmpdir / "no-tickets.ccache", keytab=str(realm.svc_keytab), principal=f"svc@{REALM}")
    svc = LivyHook()
    assert svc.submit_batch({"file": job_file, "args": ["sleep=0"]})["owner"] == "svc"
    hook.close()
    svc.close()


def test_test_connection_says_what_is_wrong_with_kerberos(kerberos_server, realm: Realm, use) -> None:
    server = kerberos_server()
    use(server, realm.tmpdir / "no-tickets.ccache")
    ok, message = LivyHook().test_connection()
    assert not ok and message.startswith("Kerberos sign-in to localhost failed: no Kerberos ticket: run kinit"), message

    use(server, realm.kinit("alice"), service_principal=f"HTTP/nosuchhost@{REALM}")
    ok, message = LivyHook().test_connection()
    assert not ok and "wrong service principal" in message, message

    use(server, realm.kinit("alice", lifetime="2s", ccache="short.ccache"))
    time.sleep(3)
    ok, message = LivyHook().test_connection()
    assert not ok and "expired" in message, message

    async def async_failure() -> str:
        async_hook = LivyAsyncHook()
        try:
            await async_hook.get_batch(0)
        except Exception as err:  # the LivyError a trigger would report
            return str(err)
        finally:
            await async_hook.aclose()
        return "no error"

    assert "expired" in asyncio.run(async_failure())
    # A skewed clock cannot be made on one machine: MIT's message for KRB5KRB_AP_ERR_SKEW, as requests-gssapi wraps it
    skew = RuntimeError(
        "stepping context failed: Major (851968): Unspecified GSS failure, Minor (2529638949): Clock skew too great"
    )
    assert kerberos_auth.describe(skew).startswith("clock skew: this worker's clock"), kerberos_auth.describe(skew)


@pytest.mark.spark
def test_real_spark_batch_and_session_through_the_operators_with_kerberos(
    kerberos_server, realm: Realm, dag_runner: DagRunner
) -> None:
    server = kerberos_server(fake_spark=False, **{"livy.spark.master": "local[2]"})
    dag = dag_runner.write_dag(
        "livy_kerberos",
        """
        LivyBatchOperator(task_id="pi", file={job!r}, args=["2"], polling_interval=2, deferrable=True, dag=dag)
        LivySessionOperator(task_id="session", statements=["spark.range(5).count()"], conf={{"spark.ui.enabled": False}},
                            polling_interval=1, dag=dag)
        """,
        job=str(PI_JOB),
    )
    ccache = realm.kinit("alice")
    env = {**kerberos_connection(server), **realm.env, "KRB5CCNAME": f"FILE:{ccache}"}
    outcome = dag_runner.run(dag, "livy_kerberos", env)
    assert outcome.task("pi")["state"] == "success", outcome.output[-4000:]
    assert outcome.task("session")["state"] == "success", outcome.output[-4000:]
    assert "Pi is roughly 3.1" in outcome.output
    assert "5" in json.dumps(outcome.task("session")["xcom"]["return_value"])
    credentials = gssapi.Credentials(usage="initiate", store={"ccache": f"FILE:{ccache}"})
    alice = requests.Session()
    alice.auth = requests_gssapi.HTTPSPNEGOAuth(creds=credentials)
    for family in ("batches", "sessions"):
        left = alice.get(local_url(server) + f"/{family}", timeout=10).json()
        assert left["total"] == 0, ("the operators leave nothing behind", family, left)
