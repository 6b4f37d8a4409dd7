"""YARN and Kubernetes trackers against a stand-in for their REST APIs.

There is no ResourceManager or Kubernetes API server on a test host, so a small HTTP server in
the test answers as those APIs document their answers (Hadoop's ResourceManager REST API:
`GET /ws/v1/cluster/apps` -> `{"apps": {"app": [...]}}`, `PUT .../apps/<id>/state`; Kubernetes:
`GET /api/v1/namespaces/<ns>/pods?labelSelector=` -> a PodList, `DELETE .../pods/<name>`). This is
the one place a stand-in replaces a real part (README, Tests). The server, spark-submit's
bookkeeping (the fake spark-submit prints the line a real one prints) and the store are real.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.cluster import tracker_for_config
from airflow_provider_livy.server.drivers.launcher import build_command
from tests.conftest import LivyServer, free_port
from tests.state_store import FileStoreView


class StandIn:
    """Cluster state the test sets, the requests the server made."""

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}  # YARN: id -> app
        self.pods: dict[str, dict[str, Any]] = {}  # Kubernetes: name -> pod
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str], Any]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _serve(self, method: str) -> None:
                url = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with stand_in.lock:
                    stand_in.requests.append((method, url.path, urllib.parse.parse_qs(url.query), dict(self.headers), body))
                    status, answer = stand_in.route(method, url.path, urllib.parse.parse_qs(url.query), body)
                self._answer(status, answer)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PUT(self) -> None:
                self._serve("PUT")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if path == "/ws/v1/cluster/apps" and method == "GET":
            tags = set(query.get("applicationTags", [""])[0].split(","))
            since = int(query.get("startedTimeBegin", ["0"])[0])
            apps = [a for a in self.apps.values() if tags & set(a["applicationTags"].split(",")) and a["startedTime"] >= since]
            return 200, {"apps": {"app": apps} if apps else None}
        if parts[:4] == ["ws", "v1", "cluster", "apps"] and parts[-1] == "state" and method == "PUT":
            app = self.apps.get(parts[4])
            if app is None:
                return 404, {"RemoteException": {"message": f"Trying to kill an absent application {parts[4]}"}}
            app.update(state="KILLED", finalStatus="KILLED")
            return 202, {"state": "KILLED"}
        if parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "pods":
            if method == "GET":
                wanted = query.get("labelSelector", [""])[0].split(",")
                items = [p for p in self.pods.values() if p["metadata"]["namespace"] == parts[3] and _selects(wanted, p)]
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}
            if method == "DELETE":
                pod = self.pods.pop(parts[5], None)
                return (200, pod) if pod else (404, {"kind": "Status", "status": "Failure", "reason": "NotFound", "code": 404})
        return 404, {"error": f"no route for {method} {path}"}

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r[0] == method and r[1] == path)


def _selects(selector: list[str], pod: dict[str, Any]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    for term in filter(None, selector):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), state.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def yarn_app(app_id: str, state: str, final: str = "UNDEFINED", tags: str = "livy-server,x") -> dict[str, Any]:
    """An app as the ResourceManager's REST API documents it (the fields we read and a few more)."""
    return {
        "id": app_id,
        "user": "livy",
        "name": "job",
        "queue": "default",
        "state": state,
        "finalStatus": final,
        "progress": 0.0,
        "trackingUI": "ApplicationMaster",
        "trackingUrl": f"http://rm:8088/proxy/{app_id}/",
        "applicationType": "SPARK",
        "applicationTags": tags,
        "startedTime": 4102444800000,  # far in the future: inside any window
        "finishedTime": 0,
        "amContainerLogs": f"http://nm:8042/node/containerlogs/container_{app_id[12:]}_01_000001/livy",
    }


def view(server: LivyServer, batch_id: int) -> dict[str, Any]:
    return server.get(f"/batches/{batch_id}").json()


def full_log(server: LivyServer, batch_id: int) -> list[str]:
    return server.get(f"/batches/{batch_id}/log", params={"size": -1}).json()["log"]


def test_spark_submit_is_told_not_to_wait_and_to_tag_the_app() -> None:
    for master, expected in (
        ("yarn", {"spark.yarn.submit.waitAppCompletion": "false", "spark.yarn.tags": "livy-server,livy-batch-1-ab"}),
        ("spark://m:7077", {"spark.standalone.submit.waitAppCompletion": "false"}),
        ("k8s://https://k:6443", {"spark.kubernetes.submission.waitAppCompletion": "false"}),
    ):
        config = ServerConfig(spark_master=master, deploy_mode="cluster")
        tracker = tracker_for_config(config)
        assert tracker is not None
        request = {"file": "hdfs:///a.jar", "conf": {k: "true" for k in expected}}  # the user's wish loses
        command = build_command(Path("/spark"), request, config, tracker.submit_conf("livy-batch-1-ab"))
        confs = dict(c.split("=", 1) for i, c in enumerate(command) if command[i - 1] == "--conf")
        assert expected.items() <= confs.items(), confs
    assert tracker_for_config(ServerConfig(spark_master="yarn", deploy_mode="client")) is None
    assert tracker_for_config(ServerConfig(spark_master="local[2]", deploy_mode="cluster")) is None


def test_yarn_apps_are_followed_by_one_listing_killed_and_missing_ones_end_dead(
    make_server, stand_in: tuple[StandIn, str], job_file: str
) -> None:
    state, url = stand_in
    down = f"http://127.0.0.1:{free_port()}"  # the first ResourceManager of the HA pair is down
    server = make_server(
        {
            "livy.spark.master": "yarn",
            "livy.spark.deploy-mode": "cluster",
            "livy.server.yarn.rm-addresses": f"{down},{url}",
            "livy.server.cluster.poll-interval": "200ms",
        }
    )
    ids = {}
    for n, name in enumerate(("ok", "doomed", "lost"), 1):
        app_id = f"application_1700000000000_000{n}"
        if name != "lost":
            state.apps[app_id] = yarn_app(app_id, "ACCEPTED")
        ids[name] = server.submit(file=job_file, args=[f"Submitted application {app_id}"])["id"]

    lost = server.wait_for(ids["lost"], timeout=30)
    assert lost["state"] == "dead"
    assert any("no longer knows driver application_1700000000000_0003" in line for line in full_log(server, ids["lost"]))
    assert view(server, ids["ok"])["state"] == "starting", "ACCEPTED is not running yet"

    state.apps["application_1700000000000_0001"]["state"] = "RUNNING"
    state.apps["application_1700000000000_0002"]["state"] = "RUNNING"
    server.wait_for(ids["ok"], {"running"}, timeout=30)
    server.wait_for(ids["doomed"], {"running"}, timeout=30)
    listing = [r for r in state.requests if r[1] == "/ws/v1/cluster/apps"][-1]
    assert listing[2]["applicationTags"] == ["livy-server"]

    assert server.delete(f"/batches/{ids['doomed']}").status_code == 200
    kills = [r for r in state.requests if r[0] == "PUT"]
    assert [(r[1], r[4]) for r in kills] == [("/ws/v1/cluster/apps/application_1700000000000_0002/state", {"state": "KILLED"})]
    assert state.apps["application_1700000000000_0002"]["state"] == "KILLED"

    state.apps["application_1700000000000_0001"].update(state="FINISHED", finalStatus="SUCCEEDED")
    done = server.wait_for(ids["ok"], timeout=30)
    assert done["state"] == "success"
    assert done["appId"] == "application_1700000000000_0001"
    assert done["appInfo"]["sparkUiUrl"] == "http://rm:8088/proxy/application_1700000000000_0001/"
    assert done["appInfo"]["driverLogUrl"].startswith("http://nm:8042/node/containerlogs/")
    assert any(f"the driver's log: {done['appInfo']['driverLogUrl']}" in line for line in full_log(server, ids["ok"]))
    assert not [r for r in state.requests if r[0] == "GET" and r[1] != "/ws/v1/cluster/apps"], "no request per app"


def test_yarn_final_states_map_onto_livy_states(make_server, stand_in: tuple[StandIn, str], job_file: str) -> None:
    state, url = stand_in
    server = make_server(
        {
            "livy.spark.master": "yarn",
            "livy.spark.deploy-mode": "cluster",
            "livy.server.yarn.rm-addresses": url,
            "livy.server.cluster.poll-interval": "200ms",
        }
    )
    cases = {
        "failed": ("FINISHED", "FAILED", "dead"),
        "killed": ("KILLED", "KILLED", "killed"),
        "crashed": ("FAILED", "FAILED", "dead"),
    }
    ids = {}
    for n, (name, (yarn_state, final, _)) in enumerate(cases.items(), 1):
        app_id = f"application_1700000000000_001{n}"
        state.apps[app_id] = yarn_app(app_id, yarn_state, final)
        ids[name] = server.submit(file=job_file, args=[f"Submitted application {app_id}"])["id"]
    for name, (_, _, livy_state) in cases.items():
        assert server.wait_for(ids[name], timeout=30)["state"] == livy_state, name


def test_kubernetes_driver_pods_are_followed_by_label_and_killed_by_deleting_the_pod(
    make_server, stand_in: tuple[StandIn, str], job_file: str, tmp_path: Path
) -> None:
    state, url = stand_in
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    store = FileStoreView(tmp_path / "store")
    server = make_server(
        {
            **store.settings,
            "livy.spark.master": f"k8s://{url}",
            "livy.spark.deploy-mode": "cluster",
            "livy.server.kubernetes.namespace": "jobs",
            "livy.server.kubernetes.token-file": str(token),
            "livy.server.cluster.poll-interval": "200ms",
        }
    )
    ids = {}
    for name in ("ok", "doomed", "failing"):
        ids[name] = server.submit(file=job_file, args=[f"pod name: {name}-driver"])["id"]
    for name, batch_id in ids.items():
        tag = _wait_for_record(store, batch_id)["appTag"]
        state.pods[f"{name}-driver"] = {
            "metadata": {
                "name": f"{name}-driver",
                "namespace": "jobs",
                "labels": {"spark-role": "driver", "spark-app-selector": f"spark-{name}", "livy-app-tag": tag},
            },
            "status": {"phase": "Running"},
        }
    for batch_id in ids.values():
        server.wait_for(batch_id, {"running"}, timeout=30)

    assert server.delete(f"/batches/{ids['doomed']}").status_code == 200
    assert "doomed-driver" not in state.pods
    assert state.count("DELETE", "/api/v1/namespaces/jobs/pods/doomed-driver") == 1

    state.pods["failing-driver"]["status"] = {
        "phase": "Failed",
        "containerStatuses": [{"name": "spark-kubernetes-driver", "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}],
    }
    state.pods["ok-driver"]["status"] = {"phase": "Succeeded"}
    failed = server.wait_for(ids["failing"], timeout=30)
    assert failed["state"] == "dead"
    assert any(
        "driver failing-driver ended in the cluster: pod Failed (exit code 1, Error)" in line
        for line in full_log(server, ids["failing"])
    )
    done = server.wait_for(ids["ok"], timeout=30)
    assert done["state"] == "success" and done["appId"] == "spark-ok"
    assert any("kubectl logs -n jobs ok-driver" in line for line in full_log(server, ids["ok"]))

    lists = [r for r in state.requests if r[0] == "GET"]
    assert lists and all(r[1] == "/api/v1/namespaces/jobs/pods" for r in lists), "one pod list, never a request per pod"
    assert lists[-1][2]["labelSelector"] == ["spark-role=driver,livy-app-tag"]
    assert all(r[3].get("Authorization") == "Bearer s3cret-token" for r in state.requests)
    assert "s3cret" not in server.server_log()
    assert all("s3cret" not in json.dumps(record) for record in store.records().values())


def _wait_for_record(store: FileStoreView, batch_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        record = store.records().get(batch_id)
        if record and record.get("clusterId"):
            return record
        assert time.monotonic() < deadline, record
        time.sleep(0.1)


def test_a_restart_on_another_port_follows_yarn_apps_again_from_the_record(
    make_server, stand_in: tuple[StandIn, str], job_file: str, tmp_path: Path
) -> None:
    """The record names the cluster (the ResourceManagers) and the app: the new server needs no YARN config at all."""
    state, url = stand_in
    store = FileStoreView(tmp_path / "store")
    settings = {
        **store.settings,
        "livy.spark.master": "yarn",
        "livy.spark.deploy-mode": "cluster",
        "livy.server.yarn.rm-addresses": url,
        "livy.server.cluster.poll-interval": "200ms",
    }
    first = make_server(settings)
    ids = {}
    for n, name in enumerate(("ends", "vanishes"), 1):
        app_id = f"application_1700000000000_002{n}"
        state.apps[app_id] = yarn_app(app_id, "RUNNING")
        ids[name] = first.submit(file=job_file, args=[f"Submitted application {app_id}"])["id"]
    for batch_id in ids.values():
        first.wait_for(batch_id, {"running"}, timeout=30)
    assert store.records()[ids["ends"]]["cluster"] == {"kind": "yarn", "rm": [url]}
    first.stop(signal.SIGKILL)
    state.apps["application_1700000000000_0021"].update(state="FINISHED", finalStatus="SUCCEEDED")
    del state.apps["application_1700000000000_0022"]

    second = make_server({**store.settings, "livy.server.cluster.poll-interval": "200ms"})  # local master, no YARN keys
    assert second.port != first.port
    assert second.wait_for(ids["ends"], timeout=30)["state"] == "success"
    assert second.wait_for(ids["vanishes"], timeout=30)["state"] == "dead"
    assert any("no longer knows driver application_1700000000000_0022" in line for line in full_log(second, ids["vanishes"]))
