"""Interactive sessions in deploy mode cluster (YARN, Kubernetes), with stand-ins for what a test host lacks.

There is no YARN or Kubernetes here. As in test_cluster_trackers.py, a small HTTP server answers as the
ResourceManager's REST API (apps listing by tag, `PUT .../state` to kill) and Kubernetes' (pod list by
label, pod delete) document. spark-submit is a fake that behaves as YARN's or Kubernetes' client does in
cluster mode without waiting for the app: it reads its `--properties-file` and `--conf`s, starts the
driver's process (our real REPL, the zip of `server/repl/livy_repl`, as plain Python with LIVY_REPL_NO_SPARK=1)
detached, with an environment made only of the `spark.yarn.appMasterEnv.*` (or
`spark.kubernetes.driverEnv.*`) settings, registers the app (or driver pod) with the stand-in, prints
the client's submission lines and exits. The server, its store, the REPL and the channel are real; the
real-Spark session path is tested in client mode (test_sessions_spark.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import LivyServer
from tests.state_store import FileStoreView
from tests.test_cluster_trackers import StandIn, yarn_app

FAKE_CLIENT = '''#!{python}
"""spark-submit as YARN's or Kubernetes' client in cluster mode, for tests/test_cluster_sessions.py."""
import json, os, subprocess, sys, time, urllib.request
import javaproperties

CLUSTER, STATE = {cluster!r}, {state!r}
args, conf, properties_file, i = sys.argv[1:], {{}}, None, 0
while i < len(args) and args[i].startswith("--"):
    if args[i] == "--properties-file":
        properties_file = args[i + 1]
    elif args[i] == "--conf":
        key, _, value = args[i + 1].partition("=")
        conf[key] = value
    i += 2
properties, mode = {{}}, None
if properties_file:
    mode = os.stat(properties_file).st_mode & 0o777
    with open(properties_file, encoding="utf-8") as handle:
        properties = javaproperties.load(handle)
settings = {{**properties, **conf}}  # --conf wins over the properties file, as in spark-submit
k8s = settings["spark.master"].startswith("k8s://")
PREFIX = "spark.kubernetes.driverEnv." if k8s else "spark.yarn.appMasterEnv."
wait = "spark.kubernetes.submission.waitAppCompletion" if k8s else "spark.yarn.submit.waitAppCompletion"
app_id = ("spark-%08x" if k8s else "application_1700000000000_%04d") % os.getpid()
with open(os.path.join(STATE, app_id + ".submit.json"), "w") as out:
    json.dump({{"argv": sys.argv, "mode": mode, "properties": properties, "conf": conf}}, out)
if settings.get("spark.submit.deployMode") != "cluster" or settings.get(wait) != "false":
    sys.exit("this fake only hands apps over in cluster mode without waiting")
env = {{key[len(PREFIX):]: value for key, value in settings.items() if key.startswith(PREFIX)}}
env.update(PATH=os.environ["PATH"], LIVY_REPL_NO_SPARK="1")  # the container's environment: nothing of ours
with open(os.path.join(STATE, app_id + ".driver.log"), "ab") as log:
    driver = subprocess.Popen([sys.executable, args[i]], env=env, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
if k8s:
    pod, namespace = app_id + "-driver", settings["spark.kubernetes.namespace"]
    tag = settings["spark.kubernetes.driver.label.livy-app-tag"]
    body = {{"id": app_id, "pod": pod, "namespace": namespace, "tag": tag, "pid": driver.pid}}
else:
    body = {{"id": app_id, "tags": settings["spark.yarn.tags"], "pid": driver.pid}}
request = urllib.request.Request(CLUSTER + "/fake/submit", data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(request).read()
if k8s:
    print("INFO LoggingPodStatusWatcherImpl: Deployed Spark application %s with application ID %s and "
          "submission ID %s:%s into Kubernetes" % (settings.get("spark.app.name", "app"), app_id, namespace, pod))
else:
    print("INFO Client: Submitting application %s to ResourceManager" % app_id)
    print("INFO YarnClientImpl: Submitted application %s" % app_id)
    print("INFO Client: Application report for %s (state: RUNNING)" % app_id)
sys.stdout.flush()
while not os.path.exists(settings.get("spark.test.exit-after", "/")):  # a test's slow client: until it says
    time.sleep(0.05)
'''


class Cluster(StandIn):
    """The stand-in ResourceManager and Kubernetes API; the fake client registers each app (or driver pod) it
    submits, and its driver's pid."""

    def __init__(self) -> None:
        super().__init__()
        self.drivers: dict[str, int] = {}  # app id -> the REPL's pid (the "container")

    def handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(super().handler()):  # type: ignore[misc]
            def do_POST(self) -> None:
                self._serve("POST")

        return Handler

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/fake/submit":
            if "pod" in body:
                labels = {"spark-role": "driver", "spark-app-selector": body["id"], "livy-app-tag": body["tag"]}
                self.pods[body["pod"]] = {
                    "metadata": {"name": body["pod"], "namespace": body["namespace"], "labels": labels},
                    "status": {"phase": "Running"},
                }
            else:
                self.apps[body["id"]] = yarn_app(body["id"], "RUNNING", tags=body["tags"])
            self.drivers[body["id"]] = body["pid"]
            return 200, {}
        return super().route(method, path, query, body)

    def kills(self) -> list[str]:
        """The apps killed through the ResourceManager (their state set to KILLED), the pods deleted."""
        with self.lock:
            return [
                r[1].split("/")[-2] if r[0] == "PUT" else r[1].split("/")[-1].removesuffix("-driver")
                for r in self.requests
                if (r[0] == "PUT" and r[4] == {"state": "KILLED"}) or r[0] == "DELETE"
            ]


@contextlib.contextmanager
def cluster_stand_in(tmp_path: Path, kind: str) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """The stand-in cluster of that kind and the settings of a server handing sessions to it."""
    stand_in = Cluster()
    server = ThreadingHTTPServer(("127.0.0.1", 0), stand_in.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    home, state = tmp_path / "fake-spark-home", tmp_path / "cluster-state"
    (home / "bin").mkdir(parents=True)
    (home / "conf").mkdir()
    state.mkdir()
    # The cluster's own defaults: spark-submit skips them once given a properties file, so the server merges them in.
    defaults = "# site defaults\nspark.yarn.queue   analytics\nspark.executor.memory=3g\n"
    (home / "conf" / "spark-defaults.conf").write_text(defaults)
    submit = home / "bin" / "spark-submit"
    submit.write_text(FAKE_CLIENT.format(python=sys.executable, cluster=url, state=str(state)))
    submit.chmod(0o755)
    settings = {
        "livy.server.spark-home": str(home),
        "livy.spark.deploy-mode": "cluster",
        "livy.server.cluster.poll-interval": "200ms",
        "livy.rsc.launcher.address": "127.0.0.1",  # the test's "cluster" is this host
    }
    if kind == "yarn":
        settings.update({"livy.spark.master": "yarn", "livy.server.yarn.rm-addresses": url})
    else:
        settings.update({"livy.spark.master": f"k8s://{url}", "livy.server.kubernetes.namespace": "jobs"})
    try:
        yield stand_in, settings
    finally:
        for pid in stand_in.drivers.values():  # drivers a test leaves running on purpose (kill -9 of the server)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.shutdown()
        server.server_close()


@pytest.fixture(params=["yarn", "kubernetes"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Cluster, dict[str, str]]]:
    with cluster_stand_in(tmp_path, request.param) as stand_in:
        yield stand_in


@pytest.fixture
def yarn(tmp_path: Path) -> Iterator[tuple[Cluster, dict[str, str]]]:
    with cluster_stand_in(tmp_path, "yarn") as stand_in:
        yield stand_in


def submission(tmp_path: Path, app_id: str) -> dict[str, Any]:
    return json.loads((tmp_path / "cluster-state" / f"{app_id}.submit.json").read_text())


def gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def wait_for_app_id(server: LivyServer, session_id: int, timeout: float = 30) -> dict[str, Any]:
    """The session's view once the cluster's next poll named its app (the REPL without Spark names none)."""
    deadline = time.monotonic() + timeout
    while (view := server.get(f"/sessions/{session_id}").json())["appId"] is None:
        assert time.monotonic() < deadline, view
        time.sleep(0.05)
    return view


def session_log(server: LivyServer, session_id: int) -> list[str]:
    return server.get(f"/sessions/{session_id}/log", params={"size": -1}).json()["log"]


def test_a_cluster_session_runs_its_repl_in_the_cluster_and_delete_kills_it_there(
    make_server, cluster: tuple[Cluster, dict[str, str]], tmp_path: Path
) -> None:
    stand_in, settings = cluster
    yarn = settings["livy.spark.master"] == "yarn"
    prefix = "spark.yarn.appMasterEnv." if yarn else "spark.kubernetes.driverEnv."
    store = FileStoreView(tmp_path / "store")
    server = make_server({**settings, **store.settings})
    session = server.open_session(kind="pyspark", name="cluster-repl")
    app_id = next(iter(stand_in.drivers))
    session = wait_for_app_id(server, session["id"])
    assert session["state"] == "idle"
    assert session["appId"] == app_id, "the cluster's id for the app"
    if yarn:
        assert session["appInfo"]["driverLogUrl"].startswith("http://nm:8042/")
    assert server.run(session["id"], "x = 40 + 2")["output"]["status"] == "ok"
    assert server.run(session["id"], "print(x)")["output"]["data"]["text/plain"].strip() == "42"

    secret = store.records(family="interactive")[session["id"]]["replSecret"]
    submitted = submission(tmp_path, app_id)
    assert secret not in json.dumps(submitted["argv"]), "the secret is never on spark-submit's command line"
    assert submitted["mode"] == 0o600
    props = submitted["properties"]
    env = {k.removeprefix(prefix): v for k, v in props.items() if k.startswith(prefix)}
    assert set(env) == {
        "LIVY_REPL_SECRET",
        "LIVY_REPL_CALLBACK",
        "LIVY_REPL_KIND",
        "LIVY_REPL_BIND",
        "LIVY_REPL_IDLE_TIMEOUT",
        "LIVY_REPL_RETAINED",
        "LIVY_REPL_MAX_OUTPUT",
        "LIVY_REPL_SQL_ROWS",
    }
    assert env["LIVY_REPL_SECRET"] == secret
    assert env["LIVY_REPL_BIND"] == "0.0.0.0"
    assert env["LIVY_REPL_CALLBACK"] == f"http://127.0.0.1:{server.port}/internal/repl/{session['id']}"
    assert props["spark.yarn.queue"] == "analytics" and props["spark.executor.memory"] == "3g", "spark-defaults.conf merged"
    if yarn:
        assert submitted["conf"]["spark.yarn.submit.waitAppCompletion"] == "false"
        assert "livy-server" in submitted["conf"]["spark.yarn.tags"]
    else:
        assert submitted["conf"]["spark.kubernetes.submission.waitAppCompletion"] == "false"
        assert submitted["conf"]["spark.kubernetes.driver.label.livy-app-tag"].startswith("livy-session-")
    assert not list(Path(server.settings["livy.server.log-dir"]).rglob("*.properties")), "removed once spark-submit exited"

    shown = [
        server.server_log(),
        json.dumps(server.get(f"/sessions/{session['id']}").json()),
        json.dumps(server.get("/sessions").json()),
        server.get("/metrics").text,
        json.dumps(session_log(server, session["id"])),
    ]
    assert not [text for text in shown if secret in text], "the secret never shows"

    driver = stand_in.drivers[app_id]
    assert psutil.pid_exists(driver)
    assert server.delete(f"/sessions/{session['id']}").json() == {"msg": "deleted"}
    assert stand_in.kills() == [app_id], "the app is killed through the cluster manager"
    assert gone(driver), "the REPL was shut down"
    if yarn:
        assert stand_in.apps[app_id]["state"] == "KILLED"
    else:
        assert not stand_in.pods, "the driver pod deleted"


def test_a_restart_follows_cluster_sessions_again_through_their_repl_and_their_app(
    make_server, yarn: tuple[Cluster, dict[str, str]], tmp_path: Path
) -> None:
    stand_in, settings = yarn
    store = FileStoreView(tmp_path / "store")
    first = make_server({**settings, **store.settings})
    kept = first.open_session(kind="pyspark")
    ended = first.open_session(kind="pyspark")
    assert first.run(kept["id"], "x = 42")["output"]["status"] == "ok"
    apps = {s["id"]: wait_for_app_id(first, s["id"])["appId"] for s in (kept, ended)}
    assert set(apps.values()) == set(stand_in.apps)
    first.stop(signal.SIGKILL)

    polls = stand_in.count("GET", "/ws/v1/cluster/apps")
    second = make_server({**store.settings, "livy.server.cluster.poll-interval": "200ms"})  # no YARN keys: the record has them
    assert second.port != first.port
    back = second.wait_for(kept["id"], {"idle"}, path="/sessions", timeout=30)
    assert back["appId"] == apps[kept["id"]]
    assert second.run(kept["id"], "print(x)")["output"]["data"]["text/plain"].strip() == "42", "its interpreter state"
    # The follower polls every 200 ms; the REPL answers sooner than that, so give it a few of its rounds
    deadline = time.monotonic() + 5
    while stand_in.count("GET", "/ws/v1/cluster/apps") <= polls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stand_in.count("GET", "/ws/v1/cluster/apps") > polls, "followed in the cluster again"

    stand_in.apps[apps[ended["id"]]].update(state="FAILED", finalStatus="FAILED")  # the cluster ends it (a node lost, say)
    dead = second.wait_for(ended["id"], {"dead", "killed"}, path="/sessions", timeout=30)
    assert dead["state"] == "dead"
    assert any(f"driver {apps[ended['id']]} ended in the cluster: FAILED" in line for line in session_log(second, ended["id"]))

    driver = stand_in.drivers[apps[kept["id"]]]
    assert second.delete(f"/sessions/{kept['id']}").json() == {"msg": "deleted"}
    assert stand_in.kills() == [apps[kept["id"]]]
    assert gone(driver)


def test_sessions_in_standalone_cluster_mode_are_refused_with_the_reason(make_server) -> None:
    server = make_server({"livy.spark.master": "spark://127.0.0.1:7077", "livy.spark.deploy-mode": "cluster"})
    response = server.post("/sessions", json={"kind": "pyspark"})
    assert response.status_code == 400
    assert "standalone" in response.json()["msg"] and "Python" in response.json()["msg"]
    assert server.get("/sessions").json()["total"] == 0


def test_users_cannot_set_the_channel_settings_of_a_cluster_driver(make_server, yarn) -> None:
    _, settings = yarn
    server = make_server(settings)
    for key in ("spark.yarn.appMasterEnv.LIVY_REPL_CALLBACK", "spark.kubernetes.driverEnv.LIVY_REPL_SECRET"):
        response = server.post("/sessions", json={"kind": "pyspark", "conf": {key: "http://elsewhere"}})
        assert response.status_code == 400, response.text
        assert "set by the server" in response.json()["msg"]


def test_batches_and_sessions_in_one_cluster_share_its_one_poll(
    make_server, yarn: tuple[Cluster, dict[str, str]], tmp_path: Path
) -> None:
    stand_in, settings = yarn
    job = tmp_path / "job.py"
    job.write_text("print('a batch driver')\n")
    server = make_server(settings)
    batch = server.submit(file=str(job))
    session = server.open_session(kind="pyspark")
    server.wait_for(batch["id"], {"running"}, timeout=30)
    wait_for_app_id(server, session["id"])
    before, started = stand_in.count("GET", "/ws/v1/cluster/apps"), time.monotonic()
    time.sleep(3)
    polls = stand_in.count("GET", "/ws/v1/cluster/apps") - before
    intervals = (time.monotonic() - started) / 0.2
    assert 0 < polls <= intervals + 2, f"{polls} listings in {intervals:.0f} intervals: one per interval for both"
    assert server.delete(f"/sessions/{session['id']}").json() == {"msg": "deleted"}
    assert server.delete(f"/batches/{batch['id']}").json() == {"msg": "deleted"}
    assert len(stand_in.kills()) == 2


def test_a_restart_while_spark_submit_still_runs_hands_the_session_over_when_it_exits(
    make_server, yarn: tuple[Cluster, dict[str, str]], tmp_path: Path
) -> None:
    stand_in, settings = yarn
    store = FileStoreView(tmp_path / "store")
    first = make_server({**settings, **store.settings})
    release = tmp_path / "release-spark-submit"
    session = first.open_session(kind="pyspark", conf={"spark.test.exit-after": str(release)})  # spark-submit lingers
    properties = Path(first.settings["livy.server.log-dir"]) / "interactive" / f"{session['id']}.properties"
    assert properties.exists() and properties.stat().st_mode & 0o777 == 0o600, "kept while spark-submit runs"
    first.stop(signal.SIGKILL)

    second = make_server({**store.settings, "livy.server.cluster.poll-interval": "200ms"})
    assert second.wait_for(session["id"], {"idle"}, path="/sessions", timeout=30)["state"] == "idle"
    assert properties.exists(), "spark-submit still runs"
    release.touch()
    app_id = next(iter(stand_in.drivers))
    deadline = time.monotonic() + 30
    while not any(f"handed the driver to the cluster as {app_id}" in line for line in session_log(second, session["id"])):
        assert time.monotonic() < deadline, "handed over once spark-submit exited"
        time.sleep(0.1)
    assert not properties.exists(), "removed once spark-submit exited"
    assert store.records(family="interactive")[session["id"]]["clusterId"] == app_id
    driver = stand_in.drivers[app_id]
    assert second.delete(f"/sessions/{session['id']}").json() == {"msg": "deleted"}
    assert stand_in.kills() == [app_id]
    assert gone(driver)
