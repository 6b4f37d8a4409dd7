"""A drop-in for apache-airflow-providers-apache-livy: the official provider's own example DAG with only its
import line (and file paths) changed, the submit-then-sense pattern, the official operator and ours side by
side in one DAG, and the official classes' signatures read from the installed package, so a new official
release shows what ours lack. DAG runs use the fake spark-submit: what is checked is bookkeeping."""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import signal
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import tenacity
from airflow.providers.apache.livy.hooks import livy as official_hooks
from airflow.providers.apache.livy.operators.livy import LivyOperator as OfficialLivyOperator
from airflow.providers.apache.livy.sensors.livy import LivySensor as OfficialLivySensor
from airflow.providers.apache.livy.triggers.livy import LivyTrigger as OfficialLivyTrigger

from airflow_provider_livy.hooks import livy as our_hooks
from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.operators.livy import LivyBatchOperator, LivyOperator
from airflow_provider_livy.sensors.livy import LivyBatchSensor, LivySensor
from airflow_provider_livy.triggers.livy import LivyTrigger
from tests.airflow.conftest import DagRunner, connection_env, wait_until
from tests.conftest import LivyServer

STATE_RETAIN = 600.0
HOOK_METHODS = (
    "post_batch",
    "get_batch",
    "get_batch_state",
    "delete_batch",
    "get_batch_logs",
    "dump_batch_logs",
    "run_method",
    "build_post_batch_body",
)
APP_ID = "app-20260101000000-0024"
# The official async hook's aiohttp plumbing (HttpAsyncHook's `config`, `run`, `session`): ours is on httpx and
# has no aiohttp session to hand out; README, "Moving from apache-airflow-providers-apache-livy".
AIOHTTP_ONLY = {"config", "run", "session"}


def parameters(function: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(function).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def positional(function: Callable[..., Any]) -> list[str]:
    return [n for n, p in parameters(function).items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


@pytest.mark.parametrize(
    ("ours", "official"),
    [
        (LivyOperator, OfficialLivyOperator),
        (LivyBatchOperator, OfficialLivyOperator),
        (LivySensor, OfficialLivySensor),
        (LivyBatchSensor, OfficialLivySensor),
    ],
)
def test_every_official_argument_is_taken(ours: type, official: type) -> None:
    missing = set(parameters(official.__init__)) - set(parameters(ours.__init__))
    assert not missing, f"{ours.__name__} lacks the official arguments {sorted(missing)}"


def test_the_official_operator_defaults_and_templated_fields() -> None:
    ours, official = parameters(LivyOperator.__init__), parameters(OfficialLivyOperator.__init__)
    assert ours["polling_interval"].default == official["polling_interval"].default == 0
    assert ours["livy_conn_id"].default == official["livy_conn_id"].default
    assert LivyOperator.template_fields == OfficialLivyOperator.template_fields == ("spark_params",)
    assert set(OfficialLivySensor.template_fields) <= set(LivySensor.template_fields)
    kwargs: dict[str, Any] = {"file": "/x.py", "args": [10], "num_executors": 1, "conf": {"a": "b"}, "class_name": "C"}
    mine, theirs = LivyOperator(task_id="ours", **kwargs), OfficialLivyOperator(task_id="theirs", **kwargs)
    assert mine.spark_params == theirs.spark_params
    assert (mine.deferrable, mine.openlineage_inject_parent_job_info, mine.openlineage_inject_transport_info) == (
        theirs.deferrable,
        theirs.openlineage_inject_parent_job_info,
        theirs.openlineage_inject_transport_info,
    )
    assert not mine.wait_for_completion, "polling_interval=0 without deferrable: submit and return"
    assert LivyOperator(task_id="deferred", file="/x.py", deferrable=True).wait_for_completion
    assert not LivyBatchOperator(task_id="no_wait", file="/x.py", polling_interval=0).wait_for_completion
    assert LivyBatchOperator(task_id="waits", file="/x.py").wait_for_completion, "ours keeps waiting by default"


@pytest.mark.parametrize("name", ["LivyHook", "LivyAsyncHook"])
def test_the_official_hook_methods_and_signatures(name: str) -> None:
    ours, official = getattr(our_hooks, name), getattr(official_hooks, name)
    assert positional(official.__init__) == positional(ours.__init__)[: len(positional(official.__init__))]
    methods = [m for m in HOOK_METHODS if hasattr(official, m)]
    assert len(methods) >= 5
    for method in methods:
        theirs, mine = getattr(official, method), getattr(ours, method)
        assert positional(theirs) == positional(mine)[: len(positional(theirs))], f"{name}.{method}"
        assert set(parameters(theirs)) <= set(parameters(mine)), f"{name}.{method}"
        assert inspect.iscoroutinefunction(theirs) == inspect.iscoroutinefunction(mine), f"{name}.{method}"
    public = [m for m in dir(official) if not m.startswith("_") and callable(getattr(official, m))]
    lacking = {m for m in public if not hasattr(ours, m)} - AIOHTTP_ONLY
    assert not lacking, f"{name} lacks the official public methods {sorted(lacking)}"
    for method in set(public) - AIOHTTP_ONLY:
        theirs, mine = getattr(official, method), getattr(ours, method)
        if inspect.isfunction(theirs) and inspect.isfunction(mine):
            assert positional(theirs) == positional(mine)[: len(positional(theirs))], f"{name}.{method}"
            assert inspect.iscoroutinefunction(theirs) == inspect.iscoroutinefunction(mine), f"{name}.{method}"
    assert {s.value for s in official.TERMINAL_STATES} == set(ours.TERMINAL_STATES)
    assert {s.value for s in official_hooks.BatchState} <= {s.value for s in our_hooks.BatchState}
    body = {"file": "/x.py", "args": [10, "a"], "class_name": "C", "jars": ["a.jar"], "driver_memory": "1g"}
    body |= {"num_executors": 2, "queue": "q", "name": "n", "proxy_user": "u", "conf": {"k": "v"}}
    assert ours.build_post_batch_body(**body) == official.build_post_batch_body(**body)
    with pytest.raises(ValueError, match="driverMemory"):
        ours.build_post_batch_body("/x.py", driver_memory="lots")


BODIES: list[dict[str, Any]] = [
    {"file": "/x.py"},
    {"file": "/x.py", "args": [10, 2.5, "a"], "driver_cores": 2, "executor_cores": 3, "executor_memory": "2g"},
    {"file": "/x.jar", "py_files": ["a.py"], "files": ["f.txt"], "archives": ["a.zip"], "num_executors": 4},
    {"file": "/x.py", "args": [], "conf": {}, "name": "", "queue": None},
]
REFUSED: list[dict[str, Any]] = [
    {"file": "/x.py", "driver_memory": "lots"},
    {"file": "/x.py", "executor_memory": "12"},
    {"file": "/x.py", "args": "not-a-list"},
    {"file": "/x.py", "jars": [{"a": 1}]},
    {"file": "/x.py", "conf": {"k": ""}},
]


@pytest.mark.parametrize("name", ["LivyHook", "LivyAsyncHook"])
def test_the_official_hook_return_shapes_without_a_server(name: str) -> None:
    """What the official hooks answer before any network call, ours answers alike: request bodies, the
    ValueError for a bad one, the TypeError for a batch id that is not an integer, a bad HTTP method."""
    ours, official = getattr(our_hooks, name), getattr(official_hooks, name)
    for body in BODIES:
        assert ours.build_post_batch_body(**body) == official.build_post_batch_body(**body), body
    # the one difference (README): a count given as a string is sent as the number Livy's API types it as
    assert ours.build_post_batch_body("/x.py", num_executors="4")["numExecutors"] == 4
    assert official.build_post_batch_body("/x.py", num_executors="4")["numExecutors"] == "4"
    for body in REFUSED:
        with pytest.raises(ValueError):
            official.build_post_batch_body(**body)
        with pytest.raises(ValueError):
            ours.build_post_batch_body(**body)
    mine, theirs = ours(), official()
    calls = [("get_batch_state", ("nine",)), ("get_batch_logs", ("nine", 0, 10))]
    if name == "LivyHook":
        calls += [("get_batch", ("nine",)), ("delete_batch", ("nine",))]
        for hook in (mine, theirs):
            with pytest.raises(ValueError, match="Invalid http method 'PATCH'"):
                hook.run_method("batches", "PATCH")
    else:
        bad = [asyncio.run(hook.run_method("batches", "TRACE")) for hook in (mine, theirs)]
        assert bad[0] == bad[1] == {"status": "error", "response": "Invalid http method TRACE"}
    for method, args in calls:
        for hook in (mine, theirs):
            call = getattr(hook, method)
            with pytest.raises(TypeError, match="'session_id' must be an integer"):
                asyncio.run(call(*args)) if inspect.iscoroutinefunction(call) else call(*args)


def plain(value: Any) -> Any:
    """An answer with enum members as their values, so the official enum and ours compare."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return getattr(value, "value", value)


def test_the_official_hooks_and_ours_answer_alike(fake_server: LivyServer, job_file: str, monkeypatch) -> None:
    """The official hooks and ours, on the official `livy` connection to one server: the same answers
    (states, log pages, delete bodies, a 404's error shape) and the same exception types on a 404."""
    from airflow.sdk.exceptions import AirflowException

    for key, value in connection_env(fake_server, conn_type="livy").items():
        monkeypatch.setenv(key, value)
    ours, official = our_hooks.LivyHook(), official_hooks.LivyHook()
    first, second = (ours.post_batch(file=job_file, args=["lines=3", n]) for n in (1, 2))
    for batch_id in (first, second):
        fake_server.wait_for(batch_id)
    mine, theirs = ours.get_batch_state(first), official.get_batch_state(first)
    assert isinstance(mine, enum.Enum) and mine.value == theirs.value == "success"
    assert ours.get_batch_logs(first, 0, 100) == official.get_batch_logs(first, 0, 100)
    assert ours.get_batch_logs(first, 1, 2) == official.get_batch_logs(first, 1, 2)
    assert ours.get_batch(first) == official.get_batch(first)
    assert ours.dump_batch_logs(first) is official.dump_batch_logs(first) is None
    assert ours.run_method("batches/999").status_code == official.run_method("batches/999").status_code == 404
    # HttpHook's methods: the connection's URL without the hook's endpoint prefix, the "<status>:<reason>" error
    prefixed = [cls(endpoint_prefix="gw") for cls in (our_hooks.LivyHook, official_hooks.LivyHook)]
    assert prefixed[0].url_from_endpoint("batches") == prefixed[1].url_from_endpoint("batches")
    assert [h.run_method("batches").json()["total"] for h in prefixed] == [2, 2]
    for hook in (our_hooks.LivyHook(), official_hooks.LivyHook()):  # fresh: the official run_method sets options
        hook.method = "GET"
        assert hook.run("batches", {"from": 0, "size": 1}).json()["total"] == 2
        with pytest.raises(AirflowException, match=r"^404:Not Found$"):
            hook.run("batches/999")
        retried = hook.run_with_advanced_retry({"stop": tenacity.stop_after_attempt(2)}, "batches")
        prepped = hook.get_conn().prepare_request(requests.Request("GET", hook.url_from_endpoint("batches")))
        assert retried.json() == hook.run_and_check(hook.get_conn(), prepped, {}).json()

    async def async_answers(hook: Any) -> list[Any]:
        answers = [
            await hook.get_batch_state(first),
            await hook.get_batch_logs(first, 0, 100),
            await hook.dump_batch_logs(first),
            await hook.run_method("batches/999", "GET"),
            await hook.get_batch_state(999),
        ]
        if hasattr(hook, "aclose"):
            await hook.aclose()
        return answers

    mine_async = asyncio.run(async_answers(our_hooks.LivyAsyncHook()))
    theirs_async = asyncio.run(async_answers(official_hooks.LivyAsyncHook()))
    assert plain(mine_async[:3]) == plain(theirs_async[:3])
    assert mine_async[0]["batch_state"] == our_hooks.BatchState.SUCCESS
    missing, theirs_missing = mine_async[3], theirs_async[3]
    assert theirs_missing == {"Response": {"Not Found"}, "Status Code": {404}, "status": "error"}
    assert theirs_missing.items() <= missing.items() and "not found" in missing["response"]
    gone, theirs_gone = mine_async[4], theirs_async[4]
    assert (gone["batch_state"], gone["status"]) == (theirs_gone["batch_state"], theirs_gone["status"]) == ("error", "error")
    assert theirs_gone["response"].items() <= gone["response"].items()

    assert ours.delete_batch(first) == official.delete_batch(second)
    assert fake_server.batch_ids() == []
    for method, args in (
        ("get_batch", (first,)),
        ("get_batch_state", (first,)),
        ("delete_batch", (first,)),
        ("get_batch_logs", (first, 0, 10)),
    ):
        with pytest.raises(AirflowException):
            getattr(official, method)(*args)
        with pytest.raises(AirflowException) as raised:
            getattr(ours, method)(*args)
        assert isinstance(raised.value, LivyError) and raised.value.status == 404, method


def test_the_official_hook_calls_against_our_server(fake_server: LivyServer, job_file: str, monkeypatch) -> None:
    """The calls a DAG or a custom operator makes on the official hooks, made on ours over the official
    `livy` connection, answer as the official hooks answer."""
    for key, value in connection_env(fake_server, conn_type="livy").items():
        monkeypatch.setenv(key, value)
    hook = our_hooks.LivyHook(extra_headers={"X-Team": "a"}, extra_options={"timeout": 20})
    batch_id = hook.post_batch(file=job_file, args=["lines=3", 7], name="official-calls")
    fake_server.wait_for(batch_id)
    state = hook.get_batch_state(batch_id, retry_args={"stop": tenacity.stop_after_attempt(2)})
    assert state == our_hooks.BatchState.SUCCESS and state in hook.TERMINAL_STATES
    assert hook.get_batch(batch_id)["name"] == "official-calls"
    page = hook.get_batch_logs(batch_id, 0, 100)
    assert "driver line 2" in page["log"] and "arg[1]=7" in page["log"]
    hook.dump_batch_logs(batch_id)
    listed = hook.run_method("batches", data={"from": 0, "size": 10})
    assert listed.status_code == 200 and [b["id"] for b in listed.json()["sessions"]] == [batch_id]
    assert hook.run_method("batches/999").status_code == 404, "an answer whatever its status, as there"

    async def async_calls() -> tuple[Any, ...]:
        ahook = our_hooks.LivyAsyncHook(extra_headers={"X-Team": "a"})
        try:
            state = await ahook.get_batch_state(batch_id)
            logs = await ahook.get_batch_logs(batch_id, 0, 100)
            lines = await ahook.dump_batch_logs(batch_id)
            missing = await ahook.run_method("batches/999", "GET")
            return state, logs, lines, missing
        finally:
            await ahook.aclose()

    state, logs, lines, missing = asyncio.run(async_calls())
    assert state["status"] == "success" and state["batch_state"] == our_hooks.BatchState.SUCCESS
    assert logs["status"] == "success" and "driver line 2" in logs["response"]["log"]
    assert "driver line 2" in lines
    assert missing["status"] == "error" and missing["Status Code"] == {404}
    assert hook.delete_batch(batch_id) == {"msg": "deleted"}
    assert fake_server.batch_ids() == []


def test_the_trigger_carries_auth_type_retry_args_prefix_and_headers(fake_server: LivyServer, monkeypatch) -> None:
    """What the task's hook was given reaches the triggerer's hook through the stored (JSON) arguments."""
    import httpx

    from airflow_provider_livy.hooks.hook_spec import HookSpec
    from airflow_provider_livy.triggers.livy import LivyBatchTrigger

    for key, value in connection_env(fake_server).items():
        monkeypatch.setenv(key, value)
    op = LivyOperator(
        task_id="carried",
        file="/x.py",
        deferrable=True,
        livy_conn_auth_type=httpx.BasicAuth,
        livy_endpoint_prefix="/gateway/livy/",
        retry_args={"stop": tenacity.stop_after_attempt(4)},
        extra_headers={"X-Team": "a"},
        extra_options={"timeout": 12},
    )
    stored = json.loads(json.dumps(LivyBatchTrigger(1, **HookSpec.of_task(op).stored()).serialize()[1]))
    hook = LivyBatchTrigger(**stored).hook_spec.async_hook()
    settings = asyncio.run(hook.settings())
    assert settings.base_url.endswith(f":{fake_server.port}/gateway/livy") and settings.timeout == 12
    assert (hook.retries, hook.extra_headers, stored["auth_type"]) == (3, {"X-Team": "a"}, "httpx.BasicAuth")


def test_the_official_trigger_arguments_as_stored(fake_server: LivyServer, job_file: str, monkeypatch) -> None:
    """The triggerer rebuilds a LivyTrigger from the kwargs the official one stores; ours takes them all
    and fires the official events."""
    for key, value in connection_env(fake_server, conn_type="livy").items():
        monkeypatch.setenv(key, value)
    batch_id = fake_server.submit(file=job_file, args=["lines=2"])["id"]
    stored = OfficialLivyTrigger(batch_id, {"file": job_file}, polling_interval=1, extra_headers={"X-Team": "a"}).serialize()[1]
    assert set(stored) <= set(LivyTrigger(**stored).serialize()[1])

    async def first_event() -> dict[str, Any]:
        async for event in LivyTrigger(**json.loads(json.dumps(stored, default=str))).run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert (event["status"], event["batch_id"], event["response"]) == ("success", batch_id, f"Batch {batch_id} succeeded")
    assert "driver line 1" in "\n".join(event["log_lines"])
    assert fake_server.get(f"/batches/{batch_id}").json()["state"] == "success"


# The official provider's system test example_livy.py (apache/airflow, providers/apache/livy/tests/system/
# apache/livy/example_livy.py), as released with 4.6.4: only the import line and the two file paths differ,
# and the lines that hook it into Airflow's own system-test harness (watcher, get_test_run) are left out.
EXAMPLE_DAG = '''
"""
This is an example DAG which uses the LivyOperator.
The tasks below trigger the computation of pi on the Spark instance
using the Java and Python executables provided in the example library.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow import DAG
from airflow_provider_livy.operators.livy import LivyOperator

ENV_ID = os.environ.get("SYSTEM_TESTS_ENV_ID")
DAG_ID = "example_livy_operator"

with DAG(
    dag_id=DAG_ID,
    default_args={{"args": [10]}},
    schedule="@daily",
    start_date=datetime(2021, 1, 1),
    catchup=False,
) as dag:
    # [START create_livy]
    livy_java_task = LivyOperator(
        task_id="pi_java_task",
        file="{jar}",
        num_executors=1,
        conf={{
            "spark.shuffle.compress": "false",
        }},
        class_name="org.apache.spark.examples.SparkPi",
    )

    livy_python_task = LivyOperator(task_id="pi_python_task", file="{pi}", polling_interval=60)

    livy_java_task >> livy_python_task
    # [END create_livy]

    # [START create_livy_deferrable]
    livy_java_task_deferrable = LivyOperator(
        task_id="livy_java_task_deferrable",
        file="{jar}",
        num_executors=1,
        conf={{
            "spark.shuffle.compress": "false",
        }},
        class_name="org.apache.spark.examples.SparkPi",
        deferrable=True,
    )

    livy_python_task_deferrable = LivyOperator(
        task_id="livy_python_task_deferrable", file="{pi}", polling_interval=60, deferrable=True
    )

    livy_java_task_deferrable >> livy_python_task_deferrable
    # [END create_livy_deferrable]
'''


def batches(server: LivyServer) -> list[dict[str, Any]]:
    return server.get("/batches").json()["sessions"]


def test_the_official_example_dag_runs_unchanged_but_for_its_import(
    make_server: Callable[..., LivyServer], dag_runner: DagRunner, tmp_path: Path
) -> None:
    server = make_server({"livy.server.session.state-retain.sec": f"{STATE_RETAIN:g}s"})
    jar, pi = tmp_path / "spark-examples.jar", tmp_path / "pi.py"
    jar.write_bytes(b"PK")
    pi.write_text("print('pi')\n")
    dag_file = dag_runner.home / "dags" / "example_livy.py"
    dag_file.write_text(textwrap.dedent(EXAMPLE_DAG).format(jar=jar, pi=pi))
    outcome = dag_runner.run(dag_file, "example_livy_operator", connection_env(server))
    tasks = ("pi_java_task", "pi_python_task", "livy_java_task_deferrable", "livy_python_task_deferrable")
    assert {t: outcome.task(t)["state"] for t in tasks} == dict.fromkeys(tasks, "success"), outcome.output[-5000:]
    for task in tasks:
        assert isinstance(outcome.task(task)["xcom"]["return_value"], int) and "app_id" in outcome.task(task)["xcom"]
    assert "left to the server's retention" in outcome.output
    no_wait = outcome.task("pi_java_task")["xcom"]["return_value"]
    left = batches(server)
    assert [b["id"] for b in left] == [no_wait], "only the batch nobody waited for is left"
    ended = server.wait_for(no_wait)
    view = server.get(f"/batches/{no_wait}").json()
    driver_log = server.get(f"/batches/{no_wait}/log", params={"from": 0, "size": 100}).json()["log"]
    assert ended["state"] == "success" and "arg[0]=10" in driver_log, "default_args' numbers reach spark-submit"
    assert 0 < view["expiresAt"] - view["finishedAt"] <= STATE_RETAIN


def test_submit_then_sense_and_the_official_operator_beside_ours(
    fake_server: LivyServer, dag_runner: DagRunner, job_file: str
) -> None:
    """One DAG: LivyOperator(polling_interval=0) >> LivySensor for a batch that succeeds and one that fails
    (our `livy_batch` connection), and the official LivyOperator beside ours on the official `livy` connection."""
    dag = dag_runner.write_dag(
        "livy_dropin",
        """
        from airflow.providers.apache.livy.operators.livy import LivyOperator as OfficialLivyOperator
        from airflow_provider_livy.operators.livy import LivyOperator
        from airflow_provider_livy.sensors.livy import LivySensor

        for outcome, args in (("ok", ["lines=2"]), ("fails", ["lines=2", "exit=3"])):
            submit = LivyOperator(task_id=f"submit_{{outcome}}", file={job!r}, args=args, dag=dag)
            pulled = "{{{{ ti.xcom_pull(task_ids='submit_" + outcome + "') }}}}"
            sense = LivySensor(task_id=f"sense_{{outcome}}", batch_id=pulled, poke_interval=1, timeout=120, dag=dag)
            submit >> sense
        same = dict(file={job!r}, args=["sleep=1", "app={app}"], livy_conn_id="livy_official", polling_interval=1,
                    conf={{"spark.app.tag": "dropin"}}, openlineage_inject_parent_job_info=True)
        OfficialLivyOperator(task_id="official", dag=dag, **same)
        LivyOperator(task_id="ours", dag=dag, **same)
        """,
        job=job_file,
        app=APP_ID,
    )
    env = connection_env(fake_server) | connection_env(fake_server, "livy_official", conn_type="livy")
    outcome = dag_runner.run(dag, "livy_dropin", env)
    states = {t: outcome.task(t)["state"] for t in ("submit_ok", "sense_ok", "submit_fails", "sense_fails", "official", "ours")}
    assert states == {
        "submit_ok": "success",
        "sense_ok": "success",
        "submit_fails": "success",
        "sense_fails": "failed",
        "official": "success",
        "ours": "success",
    }, outcome.output[-5000:]
    assert "Livy batch" in outcome.output and "ended dead. Last driver log lines:" in outcome.output

    official, ours = outcome.task("official")["xcom"], outcome.task("ours")["xcom"]
    assert set(official) <= set(ours)
    assert official["app_id"] == ours["app_id"] == APP_ID
    assert isinstance(official["return_value"], int) and isinstance(ours["return_value"], int)
    assert official["return_value"] != ours["return_value"]
    # the OpenLineage flag reaches the batch's conf through our operator as through the official one
    submitted = [line for line in outcome.output.splitlines() if "Submitting Livy batch airflow-livy_dropin-ours" in line]
    assert submitted and "'spark.openlineage.parentJobName': 'livy_dropin.ours'" in submitted[0], outcome.output[-3000:]
    assert "'spark.app.tag': 'dropin'" in submitted[0]
    official_body = next(line for line in outcome.output.splitlines() if "Submitting job {" in line)
    assert '"spark.openlineage.parentJobName": "livy_dropin.official"' in official_body
    # nothing is left but what the official operator leaves: it never deletes a batch
    assert [(b["id"], b["state"]) for b in batches(fake_server)] == [(official["return_value"], "success")]


def test_the_official_operator_methods_in_a_custom_subclass(
    fake_server: LivyServer, dag_runner: DagRunner, job_file: str
) -> None:
    """DAG code that drives the official LivyOperator's resumable-job methods itself (submit_job, get_job_status,
    is_job_active/succeeded, poll_until_complete, get_job_result) runs on ours and ends as on the official one."""
    dag = dag_runner.write_dag(
        "livy_stepwise",
        """
        from airflow.providers.apache.livy.operators.livy import LivyOperator as OfficialLivyOperator
        from airflow_provider_livy.operators.livy import LivyOperator

        def stepwise(base):
            class Stepwise(base):
                def execute(self, context):
                    batch_id = self.submit_job(context)
                    status = self.get_job_status(batch_id, context)
                    active, succeeded = self.is_job_active(status), self.is_job_succeeded(status)
                    self.log.info("STEP %s %s %s %s", self.task_id, self.external_id_key, active or succeeded, status)
                    self.poll_until_complete(batch_id, context)
                    return self.get_job_result(batch_id, context)
            return Stepwise

        for label, base, conn in (("ours", LivyOperator, "livy_default"), ("official", OfficialLivyOperator, "livy_official")):
            for outcome, args in (("ok", ["lines=2", "app={app}"]), ("fails", ["lines=2", "exit=3"])):
                stepwise(base)(task_id=f"{{label}}_{{outcome}}", file={job!r}, args=args, livy_conn_id=conn,
                               polling_interval=1, dag=dag)
        """,
        job=job_file,
        app=APP_ID,
    )
    env = connection_env(fake_server) | connection_env(fake_server, "livy_official", conn_type="livy")
    outcome = dag_runner.run(dag, "livy_stepwise", env)
    states = {t: outcome.task(t)["state"] for t in ("ours_ok", "ours_fails", "official_ok", "official_fails")}
    assert states == {"ours_ok": "success", "ours_fails": "failed", "official_ok": "success", "official_fails": "failed"}, (
        outcome.output[-5000:]
    )
    ours, official = outcome.task("ours_ok")["xcom"], outcome.task("official_ok")["xcom"]
    assert ours["app_id"] == official["app_id"] == APP_ID
    assert isinstance(ours["return_value"], int) and isinstance(official["return_value"], int)
    for task in ("ours_ok", "official_ok", "ours_fails", "official_fails"):
        assert f"STEP {task} livy_batch_id True " in outcome.output, task
    assert outcome.output.count("did not succeed") >= 2, outcome.output[-3000:]


def test_durable_false_submits_anew_and_deletes_the_earlier_batch(
    fake_server: LivyServer, dag_runner: DagRunner, job_file: str
) -> None:
    """durable=False, as on the official operator: the retry after a worker crash does not re-attach; it submits
    its own batch, and (unlike there) deletes the one the dead worker left running. on_kill then deletes the new one."""
    dag = dag_runner.write_dag(
        "livy_not_durable",
        """
        from airflow_provider_livy.operators.livy import LivyOperator
        LivyOperator(task_id="spark", file={job!r}, args=["sleep=300"], polling_interval=1, durable=False, dag=dag)
        """,
        job=job_file,
    )
    logical_date = datetime.now(UTC).isoformat()
    env = connection_env(fake_server)
    worker = dag_runner.start(dag, "livy_not_durable", env, logical_date)
    first = wait_until(lambda: fake_server.get("/batches").json()["sessions"], timeout=120, what="the batch to be submitted")[0]
    worker.proc.kill()
    worker.proc.wait()
    retry = dag_runner.start(dag, "livy_not_durable", env, logical_date)
    line = retry.wait_for_output("that an earlier try left")
    assert f"Deleting batch {first['id']} ({first['name']})" in line
    retry.wait_for_output("Livy batch")
    second = wait_until(lambda: [b for b in batches(fake_server) if b["id"] != first["id"]], timeout=60, what="a new batch")[0]
    assert fake_server.get(f"/batches/{first['id']}").status_code == 404
    retry.proc.send_signal(signal.SIGTERM)
    outcome = retry.outcome(timeout=60)
    assert f"Deleted Livy batch {second['id']} because the task was killed" in outcome.output, outcome.output[-3000:]
    assert fake_server.batch_ids() == []
