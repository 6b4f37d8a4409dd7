"""A group of two real servers on real local Spark and a real ZooKeeper (recovery mode ha).

sparkmagic and pylivy, unmodified (tests/session_clients/clients.py), are pointed at the standby and work
through its proxy, and so does the SQL hook with a connection whose first server refuses; then the leader
is killed -9 and a live Spark session, its drivers on the shared `livy.server.state-dir`, keeps its
variables under the other server. One pair for the module; the kill comes last.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import LivyServer, free_port, kill_drivers, start_server
from tests.test_group import SESSION_TIMEOUT, ha_settings, wait_leading
from tests.test_session_clients import run_client

pytestmark = [pytest.mark.spark, pytest.mark.zookeeper]


@pytest.fixture(scope="module")
def spark_pair(zookeeper, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LivyServer, LivyServer]]:
    """The leader, then a standby; both on local[1] Spark, one state directory."""
    work_dir = tmp_path_factory.mktemp("spark-group")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    servers: list[LivyServer] = []
    for _ in range(2):
        port = free_port()
        settings = {
            "livy.spark.master": "local[1]",
            "livy.server.state-dir": str(work_dir / "state"),
            **ha_settings(zookeeper.hosts, prefix, port),
        }
        servers.append(start_server(work_dir, settings, port=port))
        wait_leading(servers[0], 30)
    yield servers[0], servers[1]
    for server in servers:
        server.stop()
    kill_drivers(work_dir)


def test_sparkmagic_and_pylivy_through_a_standby(spark_pair: tuple[LivyServer, LivyServer]) -> None:
    leader, standby = spark_pair
    seen = run_client("sparkmagic", standby)
    assert seen["ok"][0] is True and seen["ok"][1].strip() == "10", seen
    assert seen["sql"] == [{"one": 1, "letter": "a"}], seen
    pylivy = run_client("pylivy", standby)
    assert pylivy["run"].strip() == "2" and pylivy["download"] == [{"n": 1, "letter": "a"}, {"n": 2, "letter": "b"}], pylivy
    assert pylivy["download_sql"] == [{"two": 2, "letter": "b"}], pylivy
    for session_id in (seen["session_id"], pylivy["session_id"], pylivy["sql_session_id"]):
        assert leader.get(f"/sessions/{session_id}").status_code == 404, "each client deleted its session"


def test_the_sql_hook_through_a_group_whose_first_server_refuses(
    spark_pair: tuple[LivyServer, LivyServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_livy.hooks.livy_sql import LivySqlHook

    _leader, standby = spark_pair
    conn = {"conn_type": "livy_sql", "host": f"127.0.0.1:{free_port()},127.0.0.1:{standby.port}"}
    monkeypatch.setenv("AIRFLOW_CONN_SQL_GROUP", json.dumps(conn))
    assert LivySqlHook(livy_conn_id="sql_group").get_records("SELECT 2 AS two, 'b' AS letter") == [(2, "b")]
    assert standby.get("/sessions").json()["sessions"] == [], "closing the connection deleted the session"


def test_a_spark_session_keeps_its_variable_across_a_kill_9_of_the_leader(spark_pair: tuple[LivyServer, LivyServer]) -> None:
    leader, standby = spark_pair
    live = standby.open_session(kind="pyspark", name="notebook", states={"idle"})
    assert standby.run(live["id"], "total = spark.range(10).count() + 32")["state"] == "available"
    leader.stop(signal.SIGKILL)
    wait_leading(standby, SESSION_TIMEOUT + 30)
    assert standby.wait_for(live["id"], {"idle"}, path="/sessions", timeout=60)["name"] == "notebook"
    assert standby.run(live["id"], "total")["output"]["data"]["text/plain"] == "42"  # the same Spark driver
    assert standby.delete(f"/sessions/{live['id']}").json() == {"msg": "deleted"}
