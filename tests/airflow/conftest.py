"""Real Airflow for the provider tests: DAG files in the session's dags folder, run with dag.test()
in a subprocess (tests/airflow/run_dag.py) against a real server on loopback."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
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


class DagWorker:
    """A `run_dag.py --serve` process: started at once, warm once it has said "ready"."""

    def __init__(self, home: Path, number: int) -> None:
        self.log_path = home / f"dag-worker-{number}.log"
        with open(self.log_path, "wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, str(RUNNER), "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO), "DAG_WORKER_LOG": str(self.log_path)},
                text=True,
                bufsize=1,
            )
        self.ready = False

    def answer(self, timeout: float) -> str:
        """The worker's next line on stdout ("" once it has exited)."""
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            self.stop()
            raise AssertionError(f"the dag.test worker gave no answer within {timeout}s:\n{self.log_path.read_text()[-3000:]}")
        return self.proc.stdout.readline()

    def send(self, argv: list[str], env: dict[str, str], log_path: Path, exit_after: bool) -> None:
        if not self.ready:
            assert self.answer(WARM_UP_TIMEOUT) == "ready\n", f"dag.test worker failed:\n{self.log_path.read_text()[-3000:]}"
            self.ready = True
        request = {"argv": argv, "env": env, "log_path": str(log_path), "exit": exit_after}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


WARM_UP_TIMEOUT = 300  # seconds; 10 to 15 on an idle 2-core machine, a minute when it is loaded


@dataclass
class DagRunner:
    """Runs DAGs with dag.test() in worker processes kept warm (tests/airflow/run_dag.py): a DAG run that
    is only awaited reuses one worker; one a test may kill or signal gets a process of its own."""

    home: Path
    count: int = 0
    spare: DagWorker | None = None
    idle: DagWorker | None = None
    workers: list[DagWorker] = field(default_factory=list)

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

    def warm(self) -> None:
        """Start a worker warming up in the background, unless one already is."""
        if self.spare is None:
            self.spare = DagWorker(self.home, len(self.workers))
            self.workers.append(self.spare)

    def _take_spare(self) -> DagWorker:
        self.warm()
        worker, self.spare = self.spare, None
        assert worker is not None
        return worker

    def _request(
        self,
        worker: DagWorker,
        dag_file: Path,
        dag_id: str,
        env: dict[str, str],
        logical_date: str | None,
        conf: dict[str, Any] | None,
        exit_after: bool,
    ) -> Path:
        logical_date = logical_date or datetime.now(UTC).isoformat()
        self.count += 1
        log_path = self.home / f"{dag_id}-{self.count}.out"
        log_path.write_bytes(b"")
        argv = [str(dag_file), dag_id, logical_date, json.dumps(conf or {})]
        worker.send(argv, {**os.environ, "PYTHONPATH": str(REPO), **env}, log_path, exit_after)
        return log_path

    def start(
        self,
        dag_file: Path,
        dag_id: str,
        env: dict[str, str],
        logical_date: str | None = None,
        conf: dict[str, Any] | None = None,
    ) -> DagProcess:
        """Run the DAG in a process of its own that the test may kill; `conf` is the run's conf (its params).
        Output goes to a file the test can watch."""
        worker = self._take_spare()
        log_path = self._request(worker, dag_file, dag_id, env, logical_date, conf, exit_after=True)
        self.warm()  # crash tests start a retry next
        return DagProcess(worker.proc, log_path)

    def run(
        self,
        dag_file: Path,
        dag_id: str,
        env: dict[str, str],
        logical_date: str | None = None,
        conf: dict[str, Any] | None = None,
        timeout: float = 300,
    ) -> DagOutcome:
        if self.idle is None or self.idle.proc.poll() is not None:
            self.idle = self._take_spare()
        worker = self.idle
        log_path = self._request(worker, dag_file, dag_id, env, logical_date, conf, exit_after=False)
        answer = worker.answer(timeout)
        if answer:
            returncode = json.loads(answer)["returncode"]
        else:  # the worker died during the run
            self.idle = None
            returncode = worker.proc.wait()
        return DagProcess.read(returncode, log_path)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


@dataclass
class DagProcess:
    proc: subprocess.Popen[str]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 120) -> str:
        """The first output line containing `text`."""

        def find() -> str | None:
            return next((line for line in self.output().splitlines() if text in line), None)

        return wait_until(find, timeout, f"{text!r} in the dag.test output")

    def outcome(self, timeout: float = 300) -> DagOutcome:
        return self.read(self.proc.wait(timeout), self.log_path)

    @staticmethod
    def read(returncode: int, log_path: Path) -> DagOutcome:
        output = log_path.read_text(errors="replace")
        marks = [line for line in output.splitlines() if line.startswith(RESULT_MARK)]
        result = json.loads(marks[-1][len(RESULT_MARK) :]) if marks else None
        return DagOutcome(returncode, output, result)


@pytest.fixture(scope="session")
def dag_runner(airflow_home: Path) -> Iterator[DagRunner]:
    runner = DagRunner(airflow_home)
    runner.warm()  # warms up while the first test sets up its servers
    yield runner
    runner.close()


def wait_until(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
