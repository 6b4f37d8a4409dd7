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
import subprocess
import sys
import sysconfig
import textwrap
import threading
import venv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import REPO, RUNNER, DagOutcome, DagProcess, wait_until

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

# The module's calls, each in a task of its own so each gets its own task instance; every task
# returns what ours computed next to what the official helper (as the official operator calls it)
# computes for the same task instance and the same conf.
PROBE_DAG = """
from datetime import datetime

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_livy.openlineage import inject_defaults, spark_conf

dag = DAG({dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)


def official(conf, context, parent_job, transport):
    # what the official LivyOperator.execute does to its conf
    from airflow.providers.common.compat.openlineage.utils.spark import (
        inject_parent_job_information_into_spark_properties,
        inject_transport_information_into_spark_properties,
    )

    conf = dict(conf or {{}})
    if parent_job:
        conf = inject_parent_job_information_into_spark_properties(conf, context)
    if transport:
        conf = inject_transport_information_into_spark_properties(conf, context)
    return conf


def compare(conf, parent_job, transport):
    context = get_current_context()
    ours = spark_conf(conf, context, parent_job=parent_job, transport=transport)
    result = {{"ours": ours, "given": conf, "defaults": list(inject_defaults())}}
    if {check_official}:
        from airflow.sdk.log import redact

        result["official"] = official(conf, context, parent_job, transport)
        result["redacted"] = {{k: redact(v) for k, v in ours.items() if k.endswith("apiKey")}}
    return result


with dag:
    task(task_id="both")(compare)({{"spark.app.x": "1"}}, parent_job=True, transport=True)
    task(task_id="parent_only")(compare)(None, parent_job=True, transport=False)
    root = {{"spark.openlineage.rootParentRunId": {preset_root!r}}}
    task(task_id="preset_root")(compare)(root, parent_job=True, transport=True)
    url = {{"spark.openlineage.transport.url": "http://mine:1"}}
    task(task_id="preset_transport")(compare)(url, parent_job=False, transport=True)
    task(task_id="off")(compare)({{"spark.app.x": "1"}}, parent_job=False, transport=False)
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


def write_probe(airflow_home: Path, dag_id: str, check_official: bool) -> Path:
    path = airflow_home / "dags" / f"{dag_id}.py"
    path.write_text(
        textwrap.dedent(PROBE_DAG).format(dag_id=dag_id, check_official=check_official, preset_root=PRESET_ROOT_RUN_ID)
    )
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


@pytest.fixture(scope="module")
def probe_run(airflow_home: Path, collector: LineageCollector) -> DagOutcome:
    pytest.importorskip("airflow.providers.openlineage", reason="the test extra installs apache-airflow-providers-openlineage")
    outcome = run_fresh(sys.executable, write_probe(airflow_home, "lineage_probe", True), "lineage_probe", lineage_env(collector))
    assert outcome.result is not None and outcome.result["state"] == "success", outcome.output[-5000:]
    return outcome


def probe(outcome: DagOutcome, task_id: str) -> dict[str, Any]:
    return outcome.task(task_id)["xcom"]["return_value"]


def test_parent_and_transport_keys_are_the_official_ones(probe_run: DagOutcome, collector: LineageCollector) -> None:
    both = probe(probe_run, "both")
    assert both["ours"] == both["official"]
    ours = both["ours"]
    assert ours["spark.app.x"] == "1"
    assert ours["spark.openlineage.parentJobNamespace"] == ours["spark.openlineage.rootParentJobNamespace"] == NAMESPACE
    assert ours["spark.openlineage.parentJobName"] == "lineage_probe.both"
    assert ours["spark.openlineage.rootParentJobName"] == "lineage_probe"
    transport = {k.removeprefix("spark.openlineage.transport."): v for k, v in ours.items() if ".transport." in k}
    assert transport == {
        "type": "http",
        "url": collector.url,
        "endpoint": "api/v1/lineage",
        "timeoutInMillis": "5000",
        "auth.type": "api_key",
        "auth.apiKey": f"Bearer {API_KEY}",
        "headers.X-Team": "data",
    }
    # the run ids Spark is given are the ones Airflow's own events carry for this task and its DAG run
    wait_until(lambda: collector.run_ids("lineage_probe"), 30, "the DAG run's lineage event")
    assert collector.run_ids("lineage_probe.both") == {ours["spark.openlineage.parentRunId"]}
    assert collector.run_ids("lineage_probe") == {ours["spark.openlineage.rootParentRunId"]}
    assert {e["headers"].get("Authorization") for e in collector.events} == {f"Bearer {API_KEY}"}


def test_each_flag_adds_only_its_own_keys(probe_run: DagOutcome) -> None:
    parent = probe(probe_run, "parent_only")["ours"]
    assert sorted(parent) == sorted(f"spark.openlineage.{k}" for k in PARENT_KEYS)
    assert parent["spark.openlineage.parentJobName"] == "lineage_probe.parent_only"
    assert parent == probe(probe_run, "parent_only")["official"]
    off = probe(probe_run, "off")
    assert off["ours"] == off["official"] == off["given"] == {"spark.app.x": "1"}


def test_a_key_the_user_set_is_kept(probe_run: DagOutcome) -> None:
    root = probe(probe_run, "preset_root")
    assert root["ours"]["spark.openlineage.rootParentRunId"] == PRESET_ROOT_RUN_ID
    assert root["official"]["spark.openlineage.rootParentRunId"] != PRESET_ROOT_RUN_ID, "the official helper replaces it"
    assert {k: v for k, v in root["ours"].items() if "rootParentRunId" not in k} == {
        k: v for k, v in root["official"].items() if "rootParentRunId" not in k
    }
    transport = probe(probe_run, "preset_transport")
    assert transport["ours"] == transport["official"] == {"spark.openlineage.transport.url": "http://mine:1"}


def test_defaults_come_from_the_openlineage_section_and_the_api_key_is_masked(probe_run: DagOutcome) -> None:
    both = probe(probe_run, "both")
    assert both["defaults"] == [True, False]  # spark_inject_parent_job_info=true, spark_inject_transport_info unset
    assert both["redacted"] == {"spark.openlineage.transport.auth.apiKey": "***"}


def test_without_the_provider_the_flags_say_so_once_and_change_nothing(airflow_home: Path, tmp_path: Path) -> None:
    python = venv_without_openlineage(tmp_path / "venv")
    env = {"AIRFLOW__OPENLINEAGE__SPARK_INJECT_TRANSPORT_INFO": "true"}
    outcome = run_fresh(str(python), write_probe(airflow_home, "lineage_absent", False), "lineage_absent", env)
    assert outcome.result is not None and outcome.result["state"] == "success", outcome.output[-5000:]
    for task_id in ("both", "parent_only", "preset_root", "preset_transport", "off"):
        result = probe(outcome, task_id)
        assert result["ours"] == (result["given"] or {}), task_id
    assert probe(outcome, "both")["defaults"] == [False, True]
    said = [line for line in outcome.output.splitlines() if NOT_INSTALLED in line]
    assert len(said) == 4, said  # one line for each task that asked for something; none for "off"
    assert sum("openlineage_inject_parent_job_info and openlineage_inject_transport_info" in line for line in said) == 2
