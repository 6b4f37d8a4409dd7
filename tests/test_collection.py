"""Never hoard: retention, eviction at the cap, 503 when full, batch ttl, creation slots, memory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from tests.conftest import LivyServer


def scrape(server: LivyServer) -> dict[str, float]:
    """Every sample of one /metrics answer, so figures read together are consistent."""
    samples = {}
    for line in server.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def metric(server: LivyServer, name: str) -> float:
    samples = scrape(server)
    assert name in samples, f"metric {name} not exposed"
    return samples[name]


def test_finished_batch_is_kept_for_state_retain_then_collected_on_time(make_server, job_file: str) -> None:
    server = make_server({"livy.server.session.state-retain.sec": "2s"})
    batch = server.submit(file=job_file)
    view = server.wait_for(batch["id"])
    assert view["expiresAt"] - view["finishedAt"] == 2.0
    assert server.get(f"/batches/{batch['id']}").status_code == 200
    while server.get(f"/batches/{batch['id']}/state").status_code == 200:
        assert time.time() < view["expiresAt"] + 1.5, "the collector is late"
        time.sleep(0.05)
    assert time.time() >= view["expiresAt"] - 0.05, "collected before its deadline"
    assert metric(server, "livy_batches_collected_total") == 1
    assert server.get("/batches").json()["total"] == 0


def test_running_batches_are_not_collected(make_server, job_file: str) -> None:
    server = make_server({"livy.server.session.state-retain.sec": "1s"})
    batch = server.submit(file=job_file, args=["sleep=3"])
    server.wait_for(batch["id"], {"running"})
    time.sleep(1.5)
    assert server.get(f"/batches/{batch['id']}/state").json()["state"] == "running"


def test_oldest_finished_are_evicted_at_max_sessions(make_server, job_file: str) -> None:
    server = make_server({"livy.server.session.max-sessions": "4"})
    first = [server.submit(file=job_file)["id"] for _ in range(4)]
    finished = sorted((server.wait_for(batch_id)["finishedAt"], batch_id) for batch_id in first)
    later = [server.submit(file=job_file)["id"] for _ in range(2)]
    kept = sorted(batch_id for _, batch_id in finished[2:])
    assert server.batch_ids() == kept + later
    assert metric(server, "livy_batches_evicted_total") == 2
    assert f"evicted finished batch {finished[0][1]} early" in server.server_log()


def test_503_with_retry_after_only_when_every_session_is_active(make_server, job_file: str) -> None:
    server = make_server({"livy.server.session.max-sessions": "2"})
    for _ in range(2):
        server.submit(file=job_file, args=["sleep=30"])
    response = server.post("/batches", json={"file": job_file})
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "all still active" in response.json()["msg"]
    assert server.get("/batches").json()["total"] == 2
    server.delete("/batches/0")
    assert server.post("/batches", json={"file": job_file}).status_code == 201


def test_batch_ttl_kills_overlong_batches(make_server, job_file: str) -> None:
    server = make_server({"livy.server.batch.ttl": "1s"})
    batch = server.submit(file=job_file, args=["sleep=60"])
    view = server.wait_for(batch["id"], timeout=10)
    assert view["state"] == "killed"
    log = server.get(f"/batches/{batch['id']}/log", params={"from": 0, "size": -1}).json()["log"]
    assert any("livy.server.batch.ttl" in line for line in log)
    assert metric(server, "livy_batches_ttl_killed_total") == 1


def test_max_creation_bounds_drivers_starting_at_once(make_server, job_file: str) -> None:
    server = make_server({"livy.server.session.max-creation": "1"})
    ids = [server.submit(file=job_file, args=["delay=1", "sleep=0"])["id"] for _ in range(3)]
    assert metric(server, "livy_sessions_waiting") == 2
    launched_at_once = set()
    while (samples := scrape(server))['livy_sessions{state="starting"}']:
        launched_at_once.add(samples['livy_sessions{state="starting"}'] - samples["livy_sessions_waiting"])
        time.sleep(0.05)
    assert launched_at_once == {1.0}
    for batch_id in ids:
        assert server.wait_for(batch_id)["state"] == "success"


def test_memory_stays_flat_when_no_client_ever_deletes(make_server, job_file: str) -> None:
    """The story's load in miniature: many batches, never deleted, a short retention and a small cap."""
    server = make_server({"livy.server.session.state-retain.sec": "1s", "livy.server.session.max-sessions": "200"})
    process = psutil.Process(server.proc.pid)

    def submit(_: int) -> int:
        response = server.post("/batches", json={"file": job_file})
        return response.status_code

    def has_room() -> bool:
        return server.get("/batches").json()["total"] < 200

    rss, accepted = [], 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(6):
            # the round before may have filled the cap with batches still running (a loaded machine runs them
            # slowly): the server makes room by itself, as they end and their retention runs out
            deadline = time.monotonic() + 60
            while not has_room():
                assert time.monotonic() < deadline, "no room made within 60 s: finished batches were not forgotten"
                time.sleep(0.1)
            codes = list(pool.map(submit, range(150)))
            assert set(codes) <= {201, 503}
            assert codes.count(201) > 0
            accepted += codes.count(201)
            rss.append(process.memory_info().rss)
            assert server.get("/batches").json()["total"] <= 200
    assert accepted > 400  # twice the cap and more went through it: never deleted, yet forgotten
    assert max(rss[3:]) <= max(rss[:3]) * 1.10, rss
