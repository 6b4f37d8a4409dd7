"""The demo behind scripts/demo.sh: our Livy server with local Spark, the example DAG through Airflow, nothing left.

Steps: start `livy-server` on a free loopback port; make a throw-away AIRFLOW_HOME (sqlite) and
migrate it; run `airflow dags test example_livy_batch`, echoing the driver log as the operator
streams it; then ask the server what it still holds (nothing). Exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAG_ID = "example_livy_batch"
SHOWN = ("[livy batch", "Submitting Livy batch", "Livy batch", "Deleted Livy batch", "ERROR", "Task failed", "DagRun Finished")


def say(text: str) -> None:
    print(f"\n[demo] {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(work: Path, port: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "airflow_provider_livy.server"]
    for key, value in {
        "livy.server.host": "127.0.0.1",
        "livy.server.port": str(port),
        "livy.server.log-dir": str(work / "driver-logs"),
        "livy.spark.master": "local[2]",
    }.items():
        args += ["--set", f"{key}={value}"]
    log = open(work / "server.log", "wb")  # noqa: SIM115 - the server writes to it for its whole life
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"livy-server exited with {proc.returncode}:\n{(work / 'server.log').read_text()}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/version", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("livy-server did not answer within 60 s")


def airflow_env(home: Path, port: int) -> dict[str, str]:
    connection = {"conn_type": "livy_batch", "host": "127.0.0.1", "port": port}
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW_CONN_LIVY_DEFAULT": json.dumps(connection),
    }


def message(line: str) -> str:
    """A structlog line without its timestamp, level padding and logger name."""
    match = re.match(r"^\S+Z \[(\w+)\s*\] (.*?)(?: \[[\w.]+\](?: loc=\S+)?.*)?$", line.rstrip())
    return (match.group(2) if match.group(1) == "info" else f"{match.group(1)}: {match.group(2)}") if match else line.rstrip()


def run_dag(env: dict[str, str], log_path: Path) -> tuple[int, bool]:
    """`airflow dags test`, echoing the interesting lines; returns (exit code, whether the run succeeded)."""
    succeeded = False
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(BIN / "airflow"), "dags", "test", DAG_ID], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if any(mark in line for mark in SHOWN):
                print("  " + message(line), flush=True)
            if "DagRun Finished" in line and "state=success" in line:
                succeeded = True
        return proc.wait(), succeeded


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="livy-demo-"))
    port = free_port()
    server = None
    try:
        say(f"1/4 starting livy-server with local Spark on 127.0.0.1:{port} (log: {work / 'server.log'})")
        server = start_server(work, port)
        home = work / "airflow-home"
        (home / "dags").mkdir(parents=True)
        shutil.copy(REPO / "dags" / f"{DAG_ID}.py", home / "dags")
        env = airflow_env(home, port)
        say(f"2/4 creating a throw-away Airflow home in {home} (sqlite) and migrating its database")
        migrate = subprocess.run([str(BIN / "airflow"), "db", "migrate"], check=False, env=env, capture_output=True, text=True)
        if migrate.returncode != 0:
            print(migrate.stdout[-3000:], migrate.stderr[-3000:])
            return 1
        say(f"3/4 airflow dags test {DAG_ID}: LivyBatchOperator submits pi.py, streams the driver log, deletes the batch")
        code, succeeded = run_dag(env, work / "airflow-dags-test.log")
        say(f"4/4 asking the server what it still holds: GET http://127.0.0.1:{port}/batches")
        held = requests.get(f"http://127.0.0.1:{port}/batches", timeout=10).json()
        print(f"  total = {held['total']}, sessions = {held['sessions']}")
        if code != 0 or not succeeded:
            say(
                f"FAILED: airflow dags test exited {code}, run succeeded: {succeeded}; full log: {work / 'airflow-dags-test.log'}"
            )
            return 1
        if held["total"] != 0:
            say("FAILED: the server still holds batches")
            return 1
        say("done: the Spark job ran through Airflow and Livy, and nothing was left behind on the server")
        shutil.rmtree(work, ignore_errors=True)
        return 0
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
