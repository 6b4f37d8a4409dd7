"""A DELETE answered 200 is never undone, in either store, however fast it follows the POST.

Clients create batches and delete them at once, while the batch waits for a creation slot, while it
launches and after it ended, for CHURN_SECONDS against each store. Afterwards the store holds exactly
the batches the server lists (records and index entries alike, none carrying a request once
launched), and after kill -9 and a restart no deleted id comes back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field

import requests

from tests.conftest import LivyServer
from tests.state_store import StoreView
from tests.test_recovery import wait_until

CHURN_SECONDS = float(os.environ.get("CHURN_SECONDS", "20"))
CLIENTS = 4
# Each client cycles through these: what the batch does, and how long the client waits before DELETE.
PATTERNS = (
    (["exit=0"], 0.0),  # ends at once, deleted at once: usually still starting or waiting for a slot
    (["delay=0.3", "sleep=0.2"], 0.05),  # deleted while its driver launches
    (["sleep=0.1"], 0.4),  # deleted around its end
    (["exit=0"], None),  # kept: the store must still hold it
)


@dataclass
class Tally:
    created: list[int] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def churn(server: LivyServer, job_file: str, tally: Tally, stop: threading.Event, offset: int) -> None:
    session = requests.Session()
    session.headers["X-Requested-By"] = "tests"
    turn = offset
    while not stop.is_set():
        args, pause = PATTERNS[turn % len(PATTERNS)]
        turn += 1
        response = session.post(f"{server.url}/batches", json={"file": job_file, "args": args}, timeout=30)
        if response.status_code != 201:
            with tally.lock:
                tally.problems.append(f"POST {response.status_code}: {response.text}")
            continue
        batch_id = response.json()["id"]
        with tally.lock:
            tally.created.append(batch_id)
        if pause is None:
            continue
        time.sleep(pause)
        answer = session.delete(f"{server.url}/batches/{batch_id}", timeout=30)
        with tally.lock:
            if answer.status_code == 200:
                tally.deleted.append(batch_id)
            else:
                tally.problems.append(f"DELETE {batch_id} {answer.status_code}: {answer.text}")


def store_matches_server(server: LivyServer, store: StoreView) -> bool:
    listed = set(server.batch_ids())
    records = store.records()
    indexed = {int(name.split("_")[0]) for name in store.index()}
    return set(records) == listed and indexed == listed


def test_deleted_batches_stay_deleted_through_churn_and_a_restart(make_server, store: StoreView, job_file: str) -> None:
    settings = {**store.settings, "livy.server.session.max-creation": "2"}  # some wait for a slot
    server = make_server(settings)
    tally, stop = Tally(), threading.Event()
    clients = [threading.Thread(target=churn, args=(server, job_file, tally, stop, i)) for i in range(CLIENTS)]
    for thread in clients:
        thread.start()
    time.sleep(CHURN_SECONDS)
    stop.set()
    for thread in clients:
        thread.join()
    assert not tally.problems, tally.problems[:5]
    assert len(tally.deleted) > 20, f"too little churn to tell anything: {len(tally.deleted)} deletes"
    kept = set(tally.created) - set(tally.deleted)
    for batch_id in kept:
        server.wait_for(batch_id)
    assert set(server.batch_ids()) == kept
    wait_until(lambda: store_matches_server(server, store), timeout=15, what="the store to hold exactly the server's batches")
    records = store.records()
    assert all(record["request"] is None for record in records.values()), "request is dropped once launched or ended"

    server.stop(signal.SIGKILL)
    restarted = make_server(settings)
    back = set(restarted.batch_ids())
    assert not back & set(tally.deleted), f"deleted batches came back: {sorted(back & set(tally.deleted))[:10]}"
    assert back == kept
    assert store_matches_server(restarted, store)
