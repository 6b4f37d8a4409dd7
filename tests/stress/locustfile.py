"""Load for the stress suite: pollers hammering GET /batches/{id}/state, clients submitting and deleting.

Run by tests/stress/test_load.py in its own process. POLL_IDS (comma-separated) are the batches the
pollers poll; JOB_FILE is the whitelisted file submitters send. A 503 at the session cap is the
server working as designed: it is counted under its own name, not as a failure.
"""

from __future__ import annotations

import os
import random
import time

from locust import FastHttpUser, between, task

POLL_IDS = [int(i) for i in os.environ["POLL_IDS"].split(",")]
JOB_FILE = os.environ["JOB_FILE"]
TERMINAL = {"success", "dead", "killed", "error"}
HEADERS = {"X-Requested-By": "locust"}


class Poller(FastHttpUser):
    fixed_count = 200
    wait_time = between(0.1, 0.5)

    @task
    def poll(self) -> None:
        self.client.get(f"/batches/{random.choice(POLL_IDS)}/state", name="GET /batches/[id]/state")


class Submitter(FastHttpUser):
    fixed_count = 20
    wait_time = between(0.1, 0.3)

    @task
    def submit_wait_delete(self) -> None:
        body = {"file": JOB_FILE, "args": [f"sleep={random.choice((0, 0.2, 1))}"]}
        with self.client.post("/batches", json=body, headers=HEADERS, catch_response=True, name="POST /batches") as response:
            if response.status_code == 503:
                response.success()
                self.environment.events.request.fire(
                    request_type="POST",
                    name="POST /batches (503 at the cap)",
                    response_time=0,
                    response_length=0,
                    exception=None,
                    context={},
                )
                time.sleep(float(response.headers.get("Retry-After", "1")) / 5)
                return
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {response.text[:200]}")
                return
            batch_id = response.json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = self.client.get(f"/batches/{batch_id}/state", name="GET /batches/[id]/state (own)").json()["state"]
            if state in TERMINAL:
                break
            time.sleep(0.2)
        self.client.delete(f"/batches/{batch_id}", headers=HEADERS, name="DELETE /batches/[id]")
