"""The livy_maintenance DAG (real dag.test) sweeping a ZooKeeper prefix that only the server's identity may use.

The server writes its znodes with the creator-only ACL of a digest identity; the connection's
`zookeeper_auth` extra carries that identity, or not. The sweep registers the password with Airflow's
masker, but no line it logs holds the password: the check here is that none does. (dag.test prints
through Airflow's own console logging, which applies no masking, so a masked line cannot be shown here.)
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.airflow.conftest import DagRunner, connection_env
from tests.airflow.test_maintenance_dag import DAG_ID, MIN_AGE, maintenance_dag, report, with_extra, znodes
from tests.state_store import ZooKeeperView, livy_record

pytestmark = pytest.mark.zookeeper
__all__ = ["maintenance_dag"]  # the fixture, for this module

PASSWORD = "dag-sweep-pw-7f3a"


def test_the_sweep_needs_the_servers_identity_and_never_shows_its_password(
    make_server, dag_runner: DagRunner, maintenance_dag: Path, zookeeper, zk_prefix: str
) -> None:
    auth = f"digest:livy:{PASSWORD}"
    zk = ZooKeeperView(zookeeper.hosts, zk_prefix, auth=auth)
    try:
        server = make_server(zk.settings)
        zk.write("v1/batch/900", livy_record(900))  # orphaned (no server holds 900), with the server's ACL
        time.sleep(MIN_AGE)
        env = connection_env(server)
        conf = {"min_age_seconds": MIN_AGE}

        without = dag_runner.run(
            maintenance_dag, DAG_ID, with_extra(env, zookeeper_hosts=zookeeper.hosts, zookeeper_prefix=zk_prefix), conf=conf
        )
        zoo = report(without, "zookeeper_sweep")
        assert zoo["deleted"] == 0 and zoo["errors"] == 2, zoo
        assert sorted(message.split(":")[0] for message in zoo["error_messages"]) == [
            f"listing /{zk_prefix}/v1/{directory}" for directory in ("batch", "interactive")
        ], zoo
        assert all("NoAuth: ZooKeeper denies this sweep's identity access" in m for m in zoo["error_messages"]), zoo
        assert "batch/900" in znodes(zk), "nothing deleted without the identity"
        assert without.task("check")["state"] == "failed", "a sweep refused access fails the run"

        extra = {"zookeeper_hosts": zookeeper.hosts, "zookeeper_prefix": zk_prefix, "zookeeper_auth": auth}
        with_identity = dag_runner.run(maintenance_dag, DAG_ID, with_extra(env, **extra), conf=conf)
        zoo = report(with_identity, "zookeeper_sweep")
        assert zoo["errors"] == 0 and zoo["deleted_sample"] == ["batch/900"], zoo
        assert "batch/900" not in znodes(zk)
        assert with_identity.result is not None and with_identity.result["state"] == "success", with_identity.output[-3000:]
        assert f"sweeping ZooKeeper {zookeeper.hosts} under /{zk_prefix}" in with_identity.output, "the task log is read"
        assert PASSWORD not in with_identity.output, "the ZooKeeper password is in no task log line nor result"
    finally:
        zk.close()
