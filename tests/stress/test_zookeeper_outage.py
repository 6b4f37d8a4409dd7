"""ZooKeeper stopped for 30 s and started again while clients create and delete batches.

A few client threads keep submitting quick fake batches and deleting their older ones throughout;
a reader keeps listing. While ZooKeeper is down, creations must be refused with 503 and a clear
message, everything else must keep answering, and the server must not crash. Once ZooKeeper is
back, the store must hold exactly what the server lists, which is exactly what the clients were
told: created and not deleted. Run with `.venv/bin/python -m pytest tests/stress -s`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import requests

from tests.conftest import LivyServer
from tests.state_store import ZooKeeperView
from tests.test_recovery import wait_until

OUTAGE = float(os.environ.get("ZK_OUTAGE_SECONDS", "30"))
CLIENTS = 4
BEFORE, AFTER = 8.0, 12.0  # seconds of traffic before the outage and after creations resumed
RESUME_TIMEOUT = 120.0  # seconds ZooKeeper and the server's reconnect may take to let creations through again, under load
KEEP = 3  # each client deletes its oldest batch once it holds more than this


@dataclass
class Tally:
    """What the server told the clients."""

    created: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # 503 messages of POST /batches
    answers: Counter[str] = field(default_factory=Counter)  # "METHOD status" -> count
    problems: list[str] = field(default_factory=list)  # anything but the answers expected
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, method: str, response: requests.Response) -> None:
        with self.lock:
            self.answers[f"{method} {response.status_code}"] += 1


def client(server: LivyServer, job_file: str, tally: Tally, stop: threading.Event) -> None:
    session = requests.Session()
    session.headers["X-Requested-By"] = "tests"
    mine: list[int] = []
    while not stop.is_set():
        try:
            response = session.post(f"{server.url}/batches", json={"file": job_file, "args": ["sleep=0.5"]}, timeout=30)
            tally.note("POST", response)
            if response.status_code == 201:
                mine.append(response.json()["id"])
                with tally.lock:
                    tally.created.append(mine[-1])
            elif response.status_code == 503:
                with tally.lock:
                    tally.refused[response.json()["msg"]] += 1
            else:
                tally.problems.append(f"POST {response.status_code}: {response.text[:300]}")
            if len(mine) > KEEP:
                response = session.delete(f"{server.url}/batches/{mine[0]}", timeout=30)
                tally.note("DELETE", response)
                if response.status_code == 200:
                    with tally.lock:
                        tally.deleted.append(mine.pop(0))
                elif response.status_code != 503:
                    tally.problems.append(f"DELETE {response.status_code}: {response.text[:300]}")
        except requests.RequestException as err:
            tally.problems.append(f"request failed: {err!r}")
        time.sleep(0.1)


def reader(server: LivyServer, tally: Tally, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        try:
            response = requests.get(f"{server.url}/batches", params={"size": 1000}, timeout=10)
            tally.note("GET", response)
            if response.status_code != 200:
                tally.problems.append(f"GET /batches {response.status_code}: {response.text[:300]}")
        except requests.RequestException as err:
            tally.problems.append(f"listing failed: {err!r}")
        if server.proc.poll() is not None:
            tally.problems.append(f"the server exited with {server.proc.returncode}")
            return


def test_zookeeper_down_for_30s_while_batches_come_and_go(make_server, private_zookeeper, zk_prefix: str, job_file: str) -> None:
    store = ZooKeeperView(private_zookeeper.hosts, zk_prefix)
    settings = {**store.settings, "livy.server.session.state-retain.sec": "1h"}
    server = make_server(settings)
    store.close()
    tally, stop = Tally(), threading.Event()
    threads = [threading.Thread(target=client, args=(server, job_file, tally, stop)) for _ in range(CLIENTS)]
    threads.append(threading.Thread(target=reader, args=(server, tally, stop)))
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE)
        created_before = len(tally.created)
        private_zookeeper.stop()
        time.sleep(OUTAGE)
        refused_during = sum(tally.refused.values())
        private_zookeeper.start()
        created_at_restart = len(tally.created)
        wait_until(lambda: len(tally.created) > created_at_restart, RESUME_TIMEOUT, "creations to resume once ZooKeeper was back")
        time.sleep(AFTER)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not tally.problems, tally.problems[:10]
    assert server.proc.poll() is None, "the server crashed"
    assert created_before > 0 and refused_during > 0, (created_before, tally.answers)
    for message in tally.refused:
        assert "state store is unavailable" in message and "nothing was created" in message, message
    assert len(set(tally.created)) == len(tally.created), "no id was handed out twice"
    assert set(tally.deleted) <= set(tally.created)

    expected = sorted(set(tally.created) - set(tally.deleted))
    for batch_id in expected:
        server.wait_for(batch_id, timeout=60)
    assert server.batch_ids() == expected, "the server lists what the clients were told, nothing more"
    views = {s["id"]: s for s in server.get("/batches", params={"size": 10000}).json()["sessions"]}
    store = ZooKeeperView(private_zookeeper.hosts, zk_prefix)
    try:

        def store_matches() -> bool:
            records = store.records()
            return sorted(records) == expected and all(records[i]["state"] == views[i]["state"] for i in expected)

        wait_until(store_matches, timeout=60, what="ZooKeeper to hold exactly the server's batches")
        index = store.index()
        assert sorted(int(name.split("_")[0]) for name in index) == expected, "one index entry per record"
        assert store.next_session_id() > max(tally.created)
    finally:
        store.close()
    print(
        f"\nfaults injected: ZooKeeper stopped for {OUTAGE:g}s (1 outage); answers {dict(sorted(tally.answers.items()))}; "
        f"{len(tally.created)} created, {len(tally.deleted)} deleted, {sum(tally.refused.values())} creations refused; "
        f"batches checked against server and store: {len(expected)} held + {len(tally.deleted)} deleted"
    )
