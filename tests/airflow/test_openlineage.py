"""OpenLineage for Livy jobs (airflow_provider_livy/openlineage.py) in real Airflow.

Each case is one dag.test() run in a process of its own: the OpenLineage provider reads its
configuration once per process (its settings are cached), so the warm workers of `dag_runner`,
started without it, cannot switch it on. One run has the provider configured with an HTTP transport
pointing at a loopback collector, which receives Airflow's own lineage events: the run ids Spark is
told to hang its lineage under are checked against the ones Airflow emits, not only against the
helper that computed them. The other run uses a real virtualenv that is ours minus the OpenLineage
provider (everything else linked in from the shared one), so "not installed" is real, not mocked.
"""

from __future__ import annotations

import http.server
import json
import os
import string
import subprocess
import sys
import sysconfig
import threading
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import REPO, RUNNER, DagOutcome, DagProcess, connection_env, wait_until
from tests.conftest import FAKE_SPARK_HOME, LivyServer, kill_drivers, start_server

NAMESPACE = "livy-lineage-tests"
API_KEY = "lineage-test-api-key"
PRESET_ROOT_RUN_ID = "01890000-0000-7000-8000-000000000001"
PARENT_KEYS = (
    "parentJobNamespace",
    "parentJobName",
    "parentRunId",
    "rootParentJobNamespace",
    "rootParentJobName",
    "rootParentRunId",
)
NOT_INSTALLED = "did nothing: the OpenLineage provider (apache-airflow-providers-openlineage) is not installed"
OPERATOR_TASKS = ("batch_both", "batch_preset", "batch_defaults", "session_both", "dropin_both")

# One DAG, one run. The probe tasks call the module, each in a task of its own so each has its own
# task instance, and return what ours computed next to what the official helper (called as the
# official operator calls it) computes for the same task instance and conf. The operator tasks send
# batches and a session to our server, whose spark-submit records its arguments.
LINEAGE_DAG = """
from datetime import datetime

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_livy.openlineage import inject_defaults, spark_conf
from airflow_provider_livy.operators.livy import LivyBatchOperator, LivyOperator, LivySessionOperator

dag = DAG("$dag_id", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
CHECK_OFFICIAL = $check_official
JOB = "$job"
BOTH = {"openlineage_inject_parent_job_info": True, "openlineage_inject_transport_info": True}
ROOT = {"spark.openlineage.rootParentRunId": "$preset_root"}
URL = {"spark.openlineage.transport.url": "http://mine:1"}


def official(conf, context, parent_job, transport):
    # what the official LivyOperator.execute does to its conf
    from airflow.providers.common.compat.openlineage.utils.spark import (
        inject_parent_job_information_into_spark_properties,
        inject_transport_information_into_spark_properties,
    )

    conf = dict(conf or {})
    if parent_job:
        conf = inject_parent_job_information_into_spark_properties(conf, context)
    if transport:
        conf = inject_transport_information_into_spark_properties(conf, context)
    return conf


def compare(conf, parent_job, transport):
    context = get_current_context()
    ours = spark_conf(conf, context, parent_job=parent_job, transport=transport)
    result = {"ours": ours, "given": conf, "defaults": list(inject_defaults())}
    if CHECK_OFFICIAL:
        from airflow.sdk.log import redact

        result["official"] = official(conf, context, parent_job, transport)
        result["redacted"] = {k: redact(v) for k, v in ours.items() if k.endswith("apiKey")}
    return result


def named(task_id):
    return {"task_id": task_id, "name": f"{dag.dag_id}-{task_id}", "polling_interval": 1}


with dag:
    task(task_id="both")(compare)({"spark.app.x": "1"}, parent_job=True, transport=True)
    task(task_id="parent_only")(compare)(None, parent_job=True, transport=False)
    task(task_id="preset_root")(compare)(ROOT, parent_job=True, transport=True)
    task(task_id="preset_transport")(compare)(URL, parent_job=False, transport=True)
    task(task_id="off")(compare)({"spark.app.x": "1"}, parent_job=False, transport=False)

    LivyBatchOperator(file=JOB, conf={"spark.app.x": "1"}, **named("batch_both"), **BOTH)
    LivyBatchOperator(file=JOB, conf={**ROOT, **URL}, **named("batch_preset"), **BOTH)
    LivyBatchOperator(file=JOB, conf={"spark.app.x": "1"}, **named("batch_defaults"))
    LivySessionOperator(statements=["1 + 1"], conf={"spark.app.x": "1"}, **named("session_both"), **BOTH)
    LivyOperator(file=JOB, conf={"spark.app.x": "1"}, **named("dropin_both"), **BOTH)
    if CHECK_OFFICIAL:
        from airflow.providers.apache.livy.operators.livy import LivyOperator as OfficialLivyOperator

        OfficialLivyOperator(file=JOB, conf={"spark.app.x": "1"}, livy_conn_id="livy_official", **named("official_both"), **BOTH)
"""


class LineageCollector:
    """A loopback OpenLineage endpoint: keeps every event POSTed to it, with its headers."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                collector.events.append({"path": self.path, "headers": dict(self.headers), "event": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def run_ids(self, job_name: str) -> set[str]:
        return {e["event"]["run"]["runId"] for e in self.events if e["event"]["job"]["name"] == job_name}


@pytest.fixture(scope="module")
def collector() -> Iterator[LineageCollector]:
    collector = LineageCollector()
    yield collector
    collector.server.shutdown()


def lineage_env(collector: LineageCollector) -> dict[str, str]:
    """Airflow's OpenLineage configuration: an HTTP transport with an API key and a header."""
    transport = {
        "type": "http",
        "url": collector.url,
        "endpoint": "api/v1/lineage",
        "timeout": 5,
        "auth": {"type": "api_key", "apiKey": API_KEY},
        "custom_headers": {"X-Team": "data"},
    }
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": NAMESPACE,
        "AIRFLOW__OPENLINEAGE__SPARK_INJECT_PARENT_JOB_INFO": "true",
    }


def run_fresh(python: str, dag_file: Path, dag_id: str, env: dict[str, str], timeout: float = 300) -> DagOutcome:
    """One dag.test() run in a new `python` process (tests/airflow/run_dag.py)."""
    log_path = dag_file.with_suffix(".out")
    argv = [python, str(RUNNER), str(dag_file), dag_id, datetime.now(UTC).isoformat()]
    with open(log_path, "wb") as out:
        code = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            timeout=timeout,
        ).returncode
    return DagProcess.read(code, log_path)


def write_dag(airflow_home: Path, dag_id: str, job: Path, check_official: bool) -> Path:
    path = airflow_home / "dags" / f"{dag_id}.py"
    values = {"dag_id": dag_id, "check_official": check_official, "job": job, "preset_root": PRESET_ROOT_RUN_ID}
    path.write_text(string.Template(LINEAGE_DAG).substitute(values))
    return path


def venv_without_openlineage(root: Path) -> Path:
    """A real virtualenv with everything the shared one has except the OpenLineage provider: its
    site-packages links each entry of the shared one, leaving out airflow/providers/openlineage and
    the provider's dist-info. Returns its python."""
    venv.EnvBuilder(symlinks=True, with_pip=False).create(root)
    source = Path(sysconfig.get_paths()["purelib"])
    target = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    left_out: dict[str, Any] = {"airflow": {"providers": {"openlineage": None}}}
    left_out.update({p.name: None for p in source.glob("apache_airflow_providers_openlineage-*")})

    def mirror(src: Path, dst: Path, rules: dict[str, Any]) -> None:
        dst.mkdir(exist_ok=True)
        for entry in src.iterdir():
            if entry.name not in rules:
                (dst / entry.name).symlink_to(entry)
            elif rules[entry.name] is not None:
                mirror(entry, dst / entry.name, rules[entry.name])

    mirror(source, target, left_out)
    return root / "bin" / "python"


@dataclass
class Lineage:
    """A server whose spark-submit records its arguments (then runs the quick fake one), and a job file."""

    server: LivyServer
    spark_home: Path
    job: Path

    def submitted_confs(self) -> dict[str, dict[str, str]]:
        """--name -> the --conf values of every spark-submit so far (batches and session drivers)."""
        confs = {}
        for path in (self.spark_home / "bin").glob("argv.*"):
            argv = path.read_bytes().decode().split("\0")[:-1]
            pairs = (argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--conf")
            confs[argv[argv.index("--name") + 1]] = dict(pairs)
        return confs


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lineage]:
    work_dir = tmp_path_factory.mktemp("lineage")
    spark_home = work_dir / "recording-spark"
    (spark_home / "bin").mkdir(parents=True)
    script = spark_home / "bin" / "spark-submit"
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\0" "$@" > "$(dirname "$0")/argv.$$"\nexec {FAKE_SPARK_HOME}/bin/spark-submit "$@"\n'
    )
    script.chmod(0o755)
    job = work_dir / "job.py"
    job.write_text("print('job')\n")
    server = start_server(work_dir, {"livy.server.spark-home": str(spark_home)})
    yield Lineage(server, spark_home, job)
    server.stop()
    kill_drivers(work_dir)


def connections(server: LivyServer) -> dict[str, str]:
    return {**connection_env(server), **connection_env(server, "livy_official", conn_type="livy")}


@pytest.fixture(scope="module")
def lineage_run(airflow_home: Path, collector: LineageCollector, lineage: Lineage) -> DagOutcome:
    """The DAG run with the OpenLineage provider configured (an HTTP transport to the collector)."""
    dag = write_dag(airflow_home, "lineage_probe", lineage.job, check_official=True)
    outcome = run_fresh(sys.executable, dag, "lineage_probe", {**lineage_env(collector), **connections(lineage.server)})
    assert outcome.result is not None and outcome.result["state"] == "success", outcome.output[-5000:]
    wait_until(lambda: collector.run_ids("lineage_probe"), 30, "the DAG run's lineage event")
    return outcome


def probe(outcome: DagOutcome, task_id: str) -> dict[str, Any]:
    return outcome.task(task_id)["xcom"]["return_value"]


def lineage_keys(conf: dict[str, str]) -> dict[str, str]:
    return {k.removeprefix("spark.openlineage."): v for k, v in conf.items() if k.startswith("spark.openlineage.")}


def expected_transport(collector: LineageCollector) -> dict[str, str]:
    """Airflow's transport (lineage_env) as Spark's OpenLineage listener reads it."""
    return {
        "transport.type": "http",
        "transport.url": collector.url,
        "transport.endpoint": "api/v1/lineage",
        "transport.timeoutInMillis": "5000",
        "transport.auth.type": "api_key",
        "transport.auth.apiKey": f"Bearer {API_KEY}",
        "transport.headers.X-Team": "data",
    }


def expected_parent(collector: LineageCollector, dag_id: str, task_id: str) -> dict[str, str]:
    """The parent and root keys for a task, from the run ids Airflow's own lineage events carry."""
    (run_id,) = collector.run_ids(f"{dag_id}.{task_id}")
    (root_run_id,) = collector.run_ids(dag_id)
    return {
        "parentJobNamespace": NAMESPACE,
        "parentJobName": f"{dag_id}.{task_id}",
        "parentRunId": run_id,
        "rootParentJobNamespace": NAMESPACE,
        "rootParentJobName": dag_id,
        "rootParentRunId": root_run_id,
    }


def test_parent_and_transport_keys_are_the_official_ones(lineage_run: DagOutcome, collector: LineageCollector) -> None:
    both = probe(lineage_run, "both")
    assert both["ours"] == both["official"]
    assert both["ours"]["spark.app.x"] == "1"
    # the run ids Spark is given are the ones Airflow's own events carry for this task and its DAG run
    assert lineage_keys(both["ours"]) == {**expected_parent(collector, "lineage_probe", "both"), **expected_transport(collector)}
    assert {e["headers"].get("Authorization") for e in collector.events} == {f"Bearer {API_KEY}"}


def test_each_flag_adds_only_its_own_keys(lineage_run: DagOutcome) -> None:
    parent = probe(lineage_run, "parent_only")
    assert sorted(parent["ours"]) == sorted(f"spark.openlineage.{k}" for k in PARENT_KEYS)
    assert parent["ours"] == parent["official"]
    assert parent["ours"]["spark.openlineage.parentJobName"] == "lineage_probe.parent_only"
    off = probe(lineage_run, "off")
    assert off["ours"] == off["official"] == off["given"] == {"spark.app.x": "1"}


def test_a_key_the_user_set_is_kept(lineage_run: DagOutcome) -> None:
    root = probe(lineage_run, "preset_root")
    assert root["ours"]["spark.openlineage.rootParentRunId"] == PRESET_ROOT_RUN_ID
    assert root["official"]["spark.openlineage.rootParentRunId"] != PRESET_ROOT_RUN_ID, "the official helper replaces it"
    assert {k: v for k, v in root["ours"].items() if "rootParentRunId" not in k} == {
        k: v for k, v in root["official"].items() if "rootParentRunId" not in k
    }
    transport = probe(lineage_run, "preset_transport")
    assert transport["ours"] == transport["official"] == {"spark.openlineage.transport.url": "http://mine:1"}


def test_defaults_come_from_the_openlineage_section_and_the_api_key_is_masked(lineage_run: DagOutcome) -> None:
    both = probe(lineage_run, "both")
    assert both["defaults"] == [True, False]  # spark_inject_parent_job_info=true, spark_inject_transport_info unset
    assert both["redacted"] == {"spark.openlineage.transport.auth.apiKey": "***"}


def test_operators_send_the_keys_to_spark_submit_and_the_session_driver(
    lineage_run: DagOutcome, lineage: Lineage, collector: LineageCollector
) -> None:
    assert {t: lineage_run.task(t)["state"] for t in (*OPERATOR_TASKS, "official_both")} == dict.fromkeys(
        (*OPERATOR_TASKS, "official_both"), "success"
    )
    confs = lineage.submitted_confs()
    transport = expected_transport(collector)
    for task_id in ("batch_both", "session_both", "dropin_both", "official_both"):
        sent = confs[f"lineage_probe-{task_id}"]
        assert sent["spark.app.x"] == "1", task_id
        assert lineage_keys(sent) == {**expected_parent(collector, "lineage_probe", task_id), **transport}, task_id
    # a key the user set is kept; the transport group is then left alone, as the official helper leaves it
    preset = lineage_keys(confs["lineage_probe-batch_preset"])
    assert preset == {
        **expected_parent(collector, "lineage_probe", "batch_preset"),
        "rootParentRunId": PRESET_ROOT_RUN_ID,
        "transport.url": "http://mine:1",
    }
    # no flag given: the defaults from [openlineage] (parent job on, transport off)
    assert lineage_keys(confs["lineage_probe-batch_defaults"]) == expected_parent(collector, "lineage_probe", "batch_defaults")
    assert NOT_INSTALLED not in lineage_run.output


def test_without_the_provider_the_flags_say_so_once_and_change_nothing(
    airflow_home: Path, tmp_path: Path, lineage: Lineage
) -> None:
    python = venv_without_openlineage(tmp_path / "venv")
    env = {"AIRFLOW__OPENLINEAGE__SPARK_INJECT_TRANSPORT_INFO": "true", **connections(lineage.server)}
    dag = write_dag(airflow_home, "lineage_absent", lineage.job, check_official=False)
    outcome = run_fresh(str(python), dag, "lineage_absent", env)
    assert outcome.result is not None and outcome.result["state"] == "success", outcome.output[-5000:]
    for task_id in ("both", "parent_only", "preset_root", "preset_transport", "off"):
        result = probe(outcome, task_id)
        assert result["ours"] == (result["given"] or {}), task_id
    assert probe(outcome, "both")["defaults"] == [False, True]
    confs = lineage.submitted_confs()
    for task_id in OPERATOR_TASKS:
        assert lineage_keys(confs[f"lineage_absent-{task_id}"]) == (
            {}
            if task_id != "batch_preset"
            else {
                "rootParentRunId": PRESET_ROOT_RUN_ID,
                "transport.url": "http://mine:1",
            }
        ), task_id
    said = [line for line in outcome.output.splitlines() if NOT_INSTALLED in line]
    # one line for each task that asked for something (4 probes, 5 operators); none for "off"
    assert len(said) == 9, said
    both = "openlineage_inject_parent_job_info and openlineage_inject_transport_info did nothing"
    assert sum(both in line for line in said) == 6  # both, preset_root and every operator task but batch_defaults
