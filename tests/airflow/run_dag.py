"""Run DAGs with dag.test() and print each outcome as JSON on its last line.

`python run_dag.py DAG_FILE DAG_ID LOGICAL_DATE [RUN_CONF_JSON]` runs one DAG and exits.

`python run_dag.py --serve` is a warm worker (tests/airflow/conftest.py keeps a small pool of them):
importing Airflow and building its in-process execution API costs 15 to 40 s of CPU per process, a
DAG run afterwards about a second. It warms up, says "ready" on stdout, then reads one JSON request a
line on stdin: the environment to run under (the test process's, connections included), where the
run's output goes, and whether to exit after the run (a test that kills "the worker" mid-task gets a
process of its own, as a crashed Airflow worker is). Each run answers one JSON line on stdout.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import traceback
from datetime import datetime

RESULT_MARK = "DAG-TEST-RESULT "


def main(dag_file: str, dag_id: str, logical_date: str, conf: str = "{}") -> None:
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from airflow.utils.session import create_session

    spec = importlib.util.spec_from_file_location("dag_under_test", dag_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id)
    when = datetime.fromisoformat(logical_date)
    # run_after fixes the run_id too, so running the same date again retries the same run
    run = dag.test(logical_date=when, run_after=when, run_conf=json.loads(conf) or None)
    result: dict[str, dict] = {}
    with create_session() as session:
        for ti in run.get_task_instances(session=session):
            xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id, task_id=ti.task_id).all()
            result[ti.task_id] = {
                "state": getattr(ti.state, "value", ti.state),
                "try_number": ti.try_number,
                "xcom": {x.key: XComModel.deserialize_value(x) for x in xcoms},
            }
    print(
        RESULT_MARK + json.dumps({"run_id": run.run_id, "state": getattr(run.state, "value", run.state), "tasks": result}),
        flush=True,
    )


def warm_up() -> None:
    """What every first dag.test() in a process pays: Airflow's imports and the in-process execution API,
    whose versioned routes are generated on its first request."""
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    for module in ("airflow_provider_livy.operators.livy", "airflow_provider_livy.operators.livy_session"):
        importlib.import_module(module)
    InProcessTestSupervisor._api_client().get("health")


def redirect_output(path: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def serve() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    worker_log = os.environ["DAG_WORKER_LOG"]
    redirect_output(worker_log)  # warm-up chatter stays out of the answers
    warm_up()
    answers.write("ready\n")
    for line in sys.stdin:
        request = json.loads(line)
        os.environ.clear()
        os.environ.update(request["env"])
        redirect_output(request["log_path"])
        try:
            main(*request["argv"])
            code = 0
        except Exception:  # reported as the exit status of a one-off runner
            traceback.print_exc()
            code = 1
        redirect_output(worker_log)
        if request["exit"]:
            sys.exit(code)
        answers.write(json.dumps({"returncode": code}) + "\n")


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main(*sys.argv[1:5])
