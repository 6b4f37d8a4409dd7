"""Real Airflow for the provider tests: DAG files in the session's dags folder, run with dag.test()
in a subprocess (tests/airflow/run_dag.py) against a real server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.run_dag import RESULT_MARK
from tests.conftest import LivyServer

RUNNER = Path(__file__).parent / "run_dag.py"
REPO = Path(__file__).parents[2]


def connection_env(server: LivyServer, conn_id: str = "livy_default", conn_type: str = "livy_batch") -> dict[str, str]:
    """The Livy connection as Airflow reads it from the environment."""
    conn = {"conn_type": conn_type, "host": "127.0.0.1", "port": server.port}
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}


@dataclass
class DagOutcome:
    returncode: int
    output: str
    result: dict[str, Any] | None

    def task(self, task_id: str) -> dict[str, Any]:
        assert self.result is not None, f"dag.test printed no result (exit {self.returncode}):\n{self.output[-5000:]}"
        return self.result["tasks"][task_id]


@dataclass
class DagRunner:
    home: Path
    count: int = 0

    def write_dag(self, dag_id: str, body: str, **values: Any) -> Path:
        """A DAG file `<dag_id>.py`: the standard header, then `body` with {placeholders} filled."""
        header = textwrap.dedent(
            f"""
            from datetime import datetime, timedelta
            from airflow.sdk import DAG, task
            from airflow_provider_livy.operators.livy import LivyBatchOperator, LivySessionOperator
            from airflow_provider_livy.sensors.livy import LivyBatchSensor

            dag = DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
            """
        )
        path = self.home / "dags" / f"{dag_id}.py"
        path.write_text(header + textwrap.dedent(body).format(**values))
        return path

    def start(
        self,
        dag_file: Path,
        dag_id: str,
        env: dict[str, str],
        logical_date: str | None = None,
        conf: dict[str, Any] | None = None,
    ) -> DagProcess:
        """Run the DAG in a subprocess; `conf` is the run's conf (its params). Output goes to a file the test can watch."""
        logical_date = logical_date or datetime.now(UTC).isoformat()
        self.count += 1
        log_path = self.home / f"{dag_id}-{self.count}.out"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, str(RUNNER), str(dag_file), dag_id, logical_date, json.dumps(conf or {})],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), **env},
            )
        return DagProcess(proc, log_path)

    def run(
        self,
        dag_file: Path,
        dag_id: str,
        env: dict[str, str],
        logical_date: str | None = None,
        conf: dict[str, Any] | None = None,
    ) -> DagOutcome:
        return self.start(dag_file, dag_id, env, logical_date, conf).outcome()


@dataclass
class DagProcess:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 120) -> str:
        """The first output line containing `text`."""

        def find() -> str | None:
            return next((line for line in self.output().splitlines() if text in line), None)

        return wait_until(find, timeout, f"{text!r} in the dag.test output")

    def outcome(self, timeout: float = 300) -> DagOutcome:
        self.proc.wait(timeout)
        output = self.output()
        marks = [line for line in output.splitlines() if line.startswith(RESULT_MARK)]
        result = json.loads(marks[-1][len(RESULT_MARK) :]) if marks else None
        return DagOutcome(self.proc.returncode, output, result)


@pytest.fixture(scope="session")
def dag_runner(airflow_home: Path) -> DagRunner:
    return DagRunner(airflow_home)


def wait_until(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
