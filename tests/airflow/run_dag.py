"""Run one DAG with dag.test() in this process and print its outcome as JSON on the last line.

The tests start this as a subprocess (python run_dag.py DAG_FILE DAG_ID LOGICAL_DATE [RUN_CONF_JSON]), so a case
can kill the "worker" (this process) mid-task, the way a crash or a SIGTERM would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
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


if __name__ == "__main__":
    main(*sys.argv[1:5])
