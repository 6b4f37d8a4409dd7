"""Load on loopback: 200 pollers plus 20 clients submitting and deleting (fake spark-home), for
STRESS_SECONDS (60 by default; scripts/test.sh, which runs the stress suite after the main suite, sets 30).

Run alone with `.venv/bin/python -m pytest tests/stress -s`. Fails on any
error other than the intentional 503 at the session cap, on a server that dies, and on memory that
keeps growing; prints request counts and latency percentiles.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from tests.conftest import LivyServer

DURATION = int(os.environ.get("STRESS_SECONDS", "60"))
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
POLLED_BATCHES = 20


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def sample_memory(pid: int, samples: list[float], stop: threading.Event) -> None:
    process = psutil.Process(pid)
    while not stop.wait(1.0):
        samples.append(process.memory_info().rss / 2**20)


def test_pollers_and_submitters_under_load(make_server, job_file: str, tmp_path: Path) -> None:
    server: LivyServer = make_server(
        {
            "livy.server.session.max-sessions": "60",
            "livy.server.session.state-retain.sec": "5s",
            "livy.server.csrf-protection.enabled": "true",
        }
    )
    polled = [server.submit(file=job_file, args=[f"sleep={DURATION + 60}"])["id"] for _ in range(POLLED_BATCHES)]
    prefix = tmp_path / "locust"
    memory: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_memory, args=(server.proc.pid, memory, stop), daemon=True)
    sampler.start()
    env = {**os.environ, "POLL_IDS": ",".join(map(str, polled)), "JOB_FILE": job_file}
    locust = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--users",
            "220",
            "--spawn-rate",
            "220",
            "--run-time",
            f"{DURATION}s",
            "--host",
            server.url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--stop-timeout",
            "10",
            "--loglevel",
            "WARNING",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=DURATION + 120,
        check=False,
    )
    stop.set()
    sampler.join()
    rows = {row["Name"]: row for row in read_csv(Path(f"{prefix}_stats.csv"))}
    failures = read_csv(Path(f"{prefix}_failures.csv"))
    capped = int(rows.get("POST /batches (503 at the cap)", {}).get("Request Count", 0))
    requests_made = int(rows["Aggregated"]["Request Count"]) - capped
    state = rows["GET /batches/[id]/state"]
    warm, late = memory[5:15], memory[-10:]
    print(
        f"\nload: {requests_made} requests in {DURATION}s ({requests_made / DURATION:.0f}/s), "
        f"{rows['Aggregated']['Failure Count']} failures, {capped} intentional 503s at the cap; "
        f"state poll p50 {state['50%']} ms p99 {state['99%']} ms max {float(state['Max Response Time']):.0f} ms; "
        f"all requests p99 {rows['Aggregated']['99%']} ms; "
        f"POST /batches {rows['POST /batches']['Request Count']} (incl. 503s), "
        f"DELETE {rows['DELETE /batches/[id]']['Request Count']}; "
        f"server RSS MiB {statistics.median(warm):.1f} -> {statistics.median(late):.1f} (max {max(memory):.1f})"
    )
    assert locust.returncode in (0, 1), locust.stderr[-2000:]
    assert not failures, failures[:5]
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert requests_made > 50 * DURATION
    assert int(rows["DELETE /batches/[id]"]["Request Count"]) > 0
    assert server.proc.poll() is None, "the server died under load"
    assert statistics.median(late) - statistics.median(warm) < 40, "server memory kept growing"
    for batch_id in polled:
        assert server.get(f"/batches/{batch_id}/state").json()["state"] == "running"
    assert "Traceback" not in server.server_log()
