"""The batch API over loopback HTTP, with the quick fake spark-submit."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests

from tests.conftest import LivyServer


def test_post_returns_201_with_location_and_livy_view(fake_server: LivyServer, job_file: str) -> None:
    response = fake_server.post("/batches", json={"file": job_file, "args": ["sleep=0"], "name": "first"})
    assert response.status_code == 201
    view = response.json()
    assert response.headers["Location"] == f"/batches/{view['id']}"
    for key in ("id", "name", "owner", "proxyUser", "state", "appId", "appInfo", "log"):
        assert key in view
    assert set(view["appInfo"]) == {"driverLogUrl", "sparkUiUrl", "executorLogUrls"}
    assert view["state"] == "starting"
    assert view["name"] == "first"
    assert fake_server.wait_for(view["id"])["state"] == "success"


def test_states_follow_the_driver_and_exit_code(fake_server: LivyServer, job_file: str) -> None:
    ok = fake_server.submit(file=job_file, args=["sleep=1"])
    failed = fake_server.submit(file=job_file, args=["exit=3"])
    assert fake_server.wait_for(ok["id"], {"running"})["state"] == "running"
    assert fake_server.wait_for(ok["id"])["state"] == "success"
    assert fake_server.wait_for(failed["id"])["state"] == "dead"


def test_state_endpoint_and_lookup_by_name(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, name="nightly-etl")
    state = fake_server.get(f"/batches/{batch['id']}/state").json()
    assert state["id"] == batch["id"]
    assert state["state"] in {"starting", "running", "success"}
    by_name = fake_server.get("/batches/nightly-etl").json()
    assert by_name["id"] == batch["id"]
    assert fake_server.get("/batches/nightly-etl/state").json()["id"] == batch["id"]


def test_state_long_poll_answers_at_the_change(fake_server: LivyServer, job_file: str) -> None:
    """?wait=S holds the answer until the state changes: the end is seen the moment it happens."""
    batch = fake_server.submit(file=job_file, args=["sleep=1.5"])
    fake_server.wait_for(batch["id"], {"running"})
    started = time.monotonic()
    answer = fake_server.get(f"/batches/{batch['id']}/state", params={"wait": "8"}).json()
    took = time.monotonic() - started
    assert answer["state"] == "success"
    view = fake_server.get(f"/batches/{batch['id']}").json()
    assert took < 4, f"held {took:.2f}s for a job of 1.5s"
    assert view["state"] == "success"

    started = time.monotonic()
    assert fake_server.get(f"/batches/{batch['id']}/state", params={"wait": "8"}).json()["state"] == "success"
    assert time.monotonic() - started < 1, "a finished batch is answered at once"


def test_state_long_poll_without_a_change_answers_after_the_wait(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, args=["sleep=60"])
    fake_server.wait_for(batch["id"], {"running"})
    started = time.monotonic()
    assert fake_server.get(f"/batches/{batch['id']}/state", params={"wait": "0.4"}).json()["state"] == "running"
    assert 0.4 <= time.monotonic() - started < 3


def test_state_long_poll_ends_when_the_batch_is_deleted(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, args=["sleep=60"])
    fake_server.wait_for(batch["id"], {"running"})
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        held = pool.submit(fake_server.get, f"/batches/{batch['id']}/state", params={"wait": "8"})
        time.sleep(0.3)
        assert fake_server.delete(f"/batches/{batch['id']}").status_code == 200
        answer = held.result()
    assert time.monotonic() - started < 4
    assert answer.status_code == 200 and answer.json()["id"] == batch["id"]


def test_state_long_poll_is_capped_and_bad_waits_are_400(make_server, job_file: str) -> None:
    server = make_server({"livy.server.batch.state-wait.max": "300ms"})
    batch = server.submit(file=job_file, args=["sleep=60"])
    server.wait_for(batch["id"], {"running"})
    started = time.monotonic()
    assert server.get(f"/batches/{batch['id']}/state", params={"wait": "30"}).json()["state"] == "running"
    assert time.monotonic() - started < 3, "held past livy.server.batch.state-wait.max"
    for bad in ("soon", "-1", "nan", "inf", ""):
        response = server.get(f"/batches/{batch['id']}/state", params={"wait": bad})
        assert response.status_code == 400, (bad, response.text)
        assert "wait" in response.json()["msg"]
    assert server.get(f"/batches/{batch['id']}/state").json()["state"] == "running"


def test_app_id_read_from_driver_output(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, args=["app=app-20261123120000-0007", "sleep=0.5"])
    view = fake_server.wait_for(batch["id"])
    assert view["appId"] == "app-20261123120000-0007"


def test_list_pages_and_total_counts_all(fake_server: LivyServer, job_file: str) -> None:
    ids = [fake_server.submit(file=job_file)["id"] for _ in range(5)]
    page = fake_server.get("/batches", params={"from": 1, "size": 2}).json()
    assert page["from"] == 1
    assert page["total"] == 5
    assert [s["id"] for s in page["sessions"]] == ids[1:3]
    assert fake_server.get("/batches").json()["total"] == 5


def test_log_paging_like_livy(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, args=["lines=150"])
    fake_server.wait_for(batch["id"])
    default = fake_server.get(f"/batches/{batch['id']}/log").json()
    total = default["total"]
    assert total >= 150
    assert len(default["log"]) == 100
    assert default["from"] == total - 100
    assert default["log"][-1].startswith("INFO SparkContext: Successfully stopped")
    first = fake_server.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": 3}).json()
    assert first["from"] == 0
    assert first["log"][0].startswith("INFO SparkContext: Running Spark version")
    everything = fake_server.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": -1}).json()
    assert len(everything["log"]) == total
    view = fake_server.get(f"/batches/{batch['id']}").json()
    assert view["log"] == everything["log"][-10:]


def test_args_reach_spark_submit_verbatim(fake_server: LivyServer, job_file: str) -> None:
    tricky = ["$(touch /tmp/pwned)", "a b; rm -rf /", "`id`", "line1\nline2", "'quoted'", "--conf"]
    batch = fake_server.submit(file=job_file, args=tricky)
    fake_server.wait_for(batch["id"])
    log = fake_server.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": -1}).json()["log"]
    text = "\n".join(log)
    for index, arg in enumerate(tricky):
        assert f"arg[{index}]={arg}" in text
    assert not os.path.exists("/tmp/pwned")


def test_delete_kills_the_whole_process_group_then_forgets(fake_server: LivyServer, job_file: str) -> None:
    batch = fake_server.submit(file=job_file, args=["sleep=60"])
    fake_server.wait_for(batch["id"], {"running"})
    log_dir = Path(fake_server.settings["livy.server.log-dir"])
    (supervisor,) = psutil.Process(fake_server.proc.pid).children()
    group = os.getpgid(supervisor.pid)
    sleepers = [
        p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "60"] and os.getpgid(p.pid) == group
    ]
    assert sleepers, "the fake driver should be running"
    response = fake_server.delete(f"/batches/{batch['id']}")
    assert response.status_code == 200
    assert response.json() == {"msg": "deleted"}
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in sleepers)
    assert fake_server.get(f"/batches/{batch['id']}").status_code == 404
    assert not (log_dir / f"{batch['id']}.log").exists()
    metrics = fake_server.get("/metrics").text
    assert "livy_batches_deleted_total 1.0" in metrics


def test_unknown_batch_is_404_with_livy_message(fake_server: LivyServer) -> None:
    for path in (
        "/batches/42",
        "/batches/42/state",
        "/batches/42/log",
        "/batches/no-such-name",
        "/batches/99999999999999999999999",
    ):
        response = fake_server.get(path)
        assert response.status_code == 404, path
        assert response.json()["msg"].startswith("Session '")
    assert fake_server.delete("/batches/42").status_code == 404


def test_invalid_requests_are_400_and_leave_nothing_behind(fake_server: LivyServer, job_file: str, tmp_path: Path) -> None:
    outside = tmp_path.parent / "outside.py"
    outside.write_text("x")
    (tmp_path / "link.py").symlink_to(outside)
    bad_bodies = [
        {},
        {"file": job_file, "unknownField": 1},
        {"file": job_file, "name": "12345"},
        {"file": job_file, "args": "not-a-list"},
        {"file": job_file, "driverMemory": "lots"},
        {"file": job_file, "numExecutors": 0},
        {"file": job_file, "conf": {"spark.master": "yarn"}},
        {"file": job_file, "conf": {"a": 1}},
        {"file": "/etc/passwd"},
        {"file": str(tmp_path / ".." / "outside.py")},
        {"file": str(tmp_path / "link.py")},
        {"file": str(tmp_path / "missing.py")},
        {"file": "relative.py"},
        {"file": job_file, "pyFiles": ["/etc/hosts"]},
        [1, 2],
    ]
    for body in bad_bodies:
        response = fake_server.post("/batches", json=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["msg"].startswith("Rejected, Reason:"), response.text
    for raw, content_type in ((b"{bad json", "application/json"), (b"\xff\xfe", "application/json"), (b"file=x", "text/plain")):
        response = fake_server.post("/batches", data=raw, headers={"Content-Type": content_type})
        assert response.status_code == 400, response.text
        assert "msg" in response.json()
    huge = fake_server.post("/batches", data=b"{" + b" " * 2_000_000 + b"}", headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert fake_server.get("/batches").json()["total"] == 0
    assert fake_server.submit(file=job_file)["id"] == 0, "rejected requests must not use up ids"


def test_duplicate_name_is_rejected(fake_server: LivyServer, job_file: str) -> None:
    fake_server.submit(file=job_file, name="unique", args=["sleep=5"])
    response = fake_server.post("/batches", json={"file": job_file, "name": "unique"})
    assert response.status_code == 400
    assert "Duplicate" in response.json()["msg"]


def test_remote_uris_pass_through(fake_server: LivyServer) -> None:
    batch = fake_server.submit(file="hdfs:///jobs/etl.py", pyFiles=["s3a://bucket/lib.zip"])
    view = fake_server.wait_for(batch["id"])
    log = fake_server.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": -1}).json()["log"]
    assert view["state"] == "success"
    assert any("Submitted application: hdfs:///jobs/etl.py" in line for line in log)


def test_bad_paging_parameters_are_400(fake_server: LivyServer) -> None:
    for params in ({"from": -1}, {"size": "ten"}, {"size": 10**9}, {"from": "1e3"}):
        response = fake_server.get("/batches", params=params)
        assert response.status_code == 400, params
        assert "msg" in response.json()


def test_version_metrics_openapi(fake_server: LivyServer) -> None:
    assert "version" in fake_server.get("/version").json()
    metrics = fake_server.get("/metrics").text
    assert 'livy_sessions{state="running"}' in metrics
    assert "process_resident_memory_bytes" in metrics
    schema = fake_server.get("/openapi.json").json()
    assert "/batches/{key}/state" in schema["paths"]
    assert fake_server.get("/docs").status_code == 200


def test_csrf_header_required_when_enabled(make_server, job_file: str) -> None:
    server = make_server({"livy.server.csrf-protection.enabled": "true"})
    bare = requests.post(server.url + "/batches", json={"file": job_file}, timeout=10)
    assert bare.status_code == 400
    assert "CSRF" in bare.json()["msg"]
    assert server.post("/batches", json={"file": job_file}).status_code == 201
    assert requests.get(server.url + "/batches", timeout=10).status_code == 200


def test_basic_auth_sets_owner(make_server, job_file: str, tmp_path: Path) -> None:
    from airflow_provider_livy.server.auth.basic import hash_password

    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password('wonderland')}\n")
    server = make_server({"livy.server.auth.type": "basic", "livy.server.auth.basic.users-file": str(users)})
    assert requests.get(server.url + "/version", timeout=10).status_code == 200
    for path in ("/batches", "/batches/0", "/batches/0/state", "/metrics"):
        response = requests.get(server.url + path, timeout=10)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = requests.get(server.url + "/batches", auth=("alice", "nope"), timeout=10)
    assert wrong.status_code == 401
    server.session.auth = ("alice", "wonderland")
    batch = server.submit(file=job_file)
    assert batch["owner"] == "alice"
    assert "wonderland" not in server.server_log()


def test_server_survives_missing_spark_submit(make_server, job_file: str, tmp_path: Path) -> None:
    empty_home = tmp_path / "no-spark"
    empty_home.mkdir()
    server = make_server({"livy.server.spark-home": str(empty_home)})
    batch = server.submit(file=job_file)
    view = server.wait_for(batch["id"])
    assert view["state"] == "dead"
    log = server.get(f"/batches/{batch['id']}/log").json()["log"]
    assert any("cannot start" in line for line in log)
    assert "spark-submit not found" in server.server_log()
    assert server.get("/version").status_code == 200
