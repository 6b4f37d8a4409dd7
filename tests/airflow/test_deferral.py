"""A deferred wait that ends without its trigger's event: the user kills the task, the triggerer
restarts, or Airflow gives up on the deferral. Against the real server with the quick fake spark-submit.

The trigger runs in Airflow's own TriggerRunner coroutine (`run_trigger`), and is cancelled the way
the triggerer cancels it: `cancel_triggers()` with the user-action message (mark failed, clear),
which makes Airflow call `on_kill()`, or a plain cancel (a triggerer shutting down), which must not.

The deferral timeout (`resume_execution("__fail__")`) is called directly on a real operator: only
the scheduler produces that call (`check_trigger_timeouts`, or a crashed trigger), and then a worker
has to run the task again, which needs a scheduler, a triggerer, an executor and the execution API.
dag.test() runs triggers inline without deferral timeouts and clears the task instance on every run,
so it cannot reach that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import psutil
import pytest
from airflow.jobs.triggerer_job_runner import TriggerRunner
from airflow.models.trigger import TriggerFailureReason
from airflow.sdk.api.datamodels._generated import TaskInstance as TaskInstanceData
from airflow.sdk.exceptions import TaskDeferralError, TaskDeferralTimeout

from airflow_provider_livy.operators.livy import LivyBatchOperator
from airflow_provider_livy.operators.livy_task import FAIL_METHOD, batch_name
from airflow_provider_livy.triggers.livy import LivyBatchTrigger
from tests.airflow.conftest import connection_env, wait_until
from tests.conftest import LivyServer

TRIGGER_ID = 1


@pytest.fixture
def livy_conn(fake_server: LivyServer, monkeypatch: pytest.MonkeyPatch) -> LivyServer:
    """livy_default points at the fake server, in this process's environment (where the trigger runs)."""
    for key, value in connection_env(fake_server).items():
        monkeypatch.setenv(key, value)
    return fake_server


def driver_processes(server: LivyServer) -> list[psutil.Process]:
    """The processes of the server's batches: each batch's supervisor leads its own process group."""
    groups = {os.getpgid(p.pid) for p in psutil.Process(server.proc.pid).children()}
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(proc.pid) in groups:
                found.append(proc)
    return found


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def start_running_batch(server: LivyServer, job_file: str, name: str | None = None) -> tuple[int, list[psutil.Process]]:
    batch_id = server.submit(file=job_file, args=["sleep=60", "lines=3"], **({"name": name} if name else {}))["id"]
    server.wait_for(batch_id, {"running"})
    drivers = wait_until(lambda: [p for p in driver_processes(server) if p.name() == "sleep"], 30, "the fake driver")
    return batch_id, drivers


def as_stored(trigger: LivyBatchTrigger) -> LivyBatchTrigger:
    """The trigger as the triggerer builds it: from the classpath and kwargs Airflow stored."""
    classpath, kwargs = trigger.serialize()
    return TriggerRunner().get_trigger_by_classpath(classpath)(**json.loads(json.dumps(kwargs)))


async def run_then_cancel(trigger: Any, by_user: bool, ready: Callable[[], bool] | None = None) -> list:
    """Run the trigger in Airflow's TriggerRunner until `ready()` (by default: it has polled and read the
    log), then cancel it as the triggerer would."""
    runner = TriggerRunner()
    task = asyncio.create_task(runner.run_trigger(TRIGGER_ID, trigger))
    runner.triggers[TRIGGER_ID] = {"task": task, "name": f"test (ID {TRIGGER_ID})", "events": 0, "is_watcher": False}
    deadline = asyncio.get_running_loop().time() + 60
    ready = ready or (lambda: trigger.log_offset > 0)  # set once run() has polled the state and read the driver's lines
    while not ready():
        assert not task.done(), task.exception()
        assert asyncio.get_running_loop().time() < deadline, "the trigger never got going"
        await asyncio.sleep(0.05)
    if by_user:
        runner.to_cancel.append(TRIGGER_ID)
        await runner.cancel_triggers()  # mark failed / clear in the UI ends here
    else:
        task.cancel()  # a triggerer shutting down cancels its triggers without a message
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return list(runner.events)


def test_user_kill_of_a_deferred_task_deletes_the_batch_but_a_triggerer_restart_does_not(
    livy_conn: LivyServer, job_file: str
) -> None:
    server = livy_conn
    batch_id, drivers = start_running_batch(server, job_file)

    deferred = LivyBatchTrigger(batch_id, polling_interval=1)  # what the operator hands to Airflow
    assert asyncio.run(run_then_cancel(as_stored(deferred), by_user=False)) == []
    assert server.get(f"/batches/{batch_id}/state").json()["state"] == "running", "a restart keeps the job"
    assert len(alive(drivers)) == len(drivers)

    # the restarted triggerer builds the trigger again from what was stored at deferral
    assert asyncio.run(run_then_cancel(as_stored(deferred), by_user=True)) == [], "a killed trigger fires no event"
    assert server.get(f"/batches/{batch_id}").status_code == 404
    assert server.batch_ids() == []
    wait_until(lambda: not alive(drivers), 10, "the driver to die")
    assert "livy_batches_deleted_total 1.0" in server.get("/metrics").text


def task_context(dag_id: str, task_id: str, run_id: str) -> dict:
    """The part of a task's context the operator reads on resume: its task instance's identity."""
    ti = TaskInstanceData(
        id=uuid.uuid4(), task_id=task_id, dag_id=dag_id, run_id=run_id, try_number=1, map_index=-1, dag_version_id=uuid.uuid4()
    )
    return {"ti": ti}


@pytest.mark.parametrize(
    ("reason", "raised"),
    [(TriggerFailureReason.TRIGGER_TIMEOUT, TaskDeferralTimeout), (TriggerFailureReason.TRIGGER_FAILURE, TaskDeferralError)],
)
def test_deferral_timeout_or_trigger_failure_deletes_the_batch(
    livy_conn: LivyServer, job_file: str, reason: TriggerFailureReason, raised: type[Exception]
) -> None:
    server = livy_conn
    op = LivyBatchOperator(task_id="spark", file=job_file, args=["sleep=60"], deferrable=True)
    context = task_context("livy_deferral", "spark", "manual__2026-01-01T00:00:00+00:00")
    request = op.batch_request(context)
    assert request["name"] == batch_name("livy_deferral", "spark", "manual__2026-01-01T00:00:00+00:00")
    batch_id, drivers = start_running_batch(server, job_file, name=request["name"])

    # what the scheduler stores for the worker: next_method "__fail__" and the reason, as JSON
    next_kwargs = json.loads(json.dumps({"error": reason}))
    with pytest.raises(raised):
        op.resume_execution(FAIL_METHOD, next_kwargs, context)
    assert server.get(f"/batches/{batch_id}").status_code == 404
    assert server.batch_ids() == []
    wait_until(lambda: not alive(drivers), 10, "the driver to die")


def test_deferral_failure_keeps_a_failed_batch_when_asked(livy_conn: LivyServer, job_file: str) -> None:
    server = livy_conn
    op = LivyBatchOperator(task_id="spark", file=job_file, deferrable=True, delete_on_failure=False)
    context = task_context("livy_deferral", "spark", "manual__2026-01-02T00:00:00+00:00")
    name = op.batch_request(context)["name"]
    failed = server.submit(file=job_file, args=["exit=1"], name=name)["id"]
    server.wait_for(failed)
    with pytest.raises(TaskDeferralError):
        op.resume_execution(FAIL_METHOD, {"error": TriggerFailureReason.TRIGGER_FAILURE.value}, context)
    assert [(b["id"], b["state"]) for b in server.get("/batches").json()["sessions"]] == [(failed, "dead")]
