"""A session's channel secret is in its store record and nowhere a user or operator looks.

One real pyspark session goes through create, a statement, a restart of the server and delete; after
each step the server log, the REST views, /ui, /metrics and the session's log are searched for its
secret. A LivySessionOperator run in real Airflow (on the quick fake spark-submit, the same REPL as
plain Python) is searched the same way in its task log, for the secret of the session it made.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_livy.server.redaction import REDACTED
from tests.airflow.conftest import DagRunner, connection_env
from tests.conftest import LivyServer
from tests.state_store import FileStoreView

S3_SECRET = "s3a-secret-value-never-stored"


def shown(server: LivyServer, session_id: int) -> dict[str, str]:
    """Everything the server shows about a session, by where it was found."""
    pages = {
        "server log": server.server_log(),
        "/ui": server.get("/ui").text,
        f"/ui/sessions/{session_id}": server.get(f"/ui/sessions/{session_id}").text,
        "/metrics": server.get("/metrics").text,
        "/sessions": server.get("/sessions").text,
        f"/sessions/{session_id}": server.get(f"/sessions/{session_id}").text,
        "log": server.get(f"/sessions/{session_id}/log", params={"size": -1}).text,
        "statements": server.get(f"/sessions/{session_id}/statements").text,
    }
    wrong = server.post(f"/internal/repl/{session_id}", headers={"Authorization": "Bearer nope"}, json={})
    pages["a refused callback"] = f"{wrong.status_code} {wrong.text}"
    return pages


def found(secret: str, pages: dict[str, str]) -> list[str]:
    return [where for where, text in pages.items() if secret in text]


@pytest.mark.spark
@pytest.mark.timeout(900)
def test_the_secret_shows_nowhere_through_create_statement_restart_and_delete(
    make_server: Callable[..., LivyServer], tmp_path: Path
) -> None:
    store = FileStoreView(tmp_path / "store")
    settings = {**store.settings, "livy.spark.master": "local[1]"}
    server = make_server(settings, fake_spark=False)
    conf = {"spark.ui.enabled": "false", "spark.hadoop.fs.s3a.secret.key": S3_SECRET}
    session = server.open_session(kind="pyspark", conf=conf)
    sid = session["id"]
    record = store.records("interactive")[sid]
    secret = record["replSecret"]
    assert len(secret) >= 32
    assert record["request"] is None, "the request is dropped once the driver is launched"
    assert record["conf"]["spark.hadoop.fs.s3a.secret.key"] == REDACTED and record["conf"]["spark.ui.enabled"] == "false"
    raw = (store.root / "v1" / "interactive" / str(sid)).read_text()
    assert secret in raw and S3_SECRET not in raw, "the secret a restart needs is kept, secret-looking conf values are not"
    assert found(secret, shown(server, sid)) == [], "after create"
    assert found(S3_SECRET, shown(server, sid)) == [], "a secret-looking conf value shows nowhere either"

    assert server.run(sid, "sum(range(5))")["output"]["data"]["text/plain"] == "10"
    assert found(secret, shown(server, sid)) == [], "after a statement"

    server.stop(signal.SIGTERM)  # recovery on: the driver keeps running for the next server
    restarted = make_server(settings, fake_spark=False, port=server.port)
    restarted.wait_for(sid, {"idle"}, path="/sessions", timeout=60)
    assert restarted.run(sid, "spark.range(3).count()")["output"]["data"]["text/plain"] == "3"
    assert store.records("interactive")[sid]["replSecret"] == secret, "the restart reconnected with the stored secret"
    assert found(secret, shown(restarted, sid)) == [], "after a restart"

    assert restarted.delete(f"/sessions/{sid}").json() == {"msg": "deleted"}
    pages = shown(restarted, sid)
    assert found(secret, pages) == [], "after delete"
    assert found(S3_SECRET, {"server log": pages["server log"]}) == []


def test_the_secret_of_an_operators_session_is_not_in_its_task_log(
    make_server: Callable[..., LivyServer], dag_runner: DagRunner, tmp_path: Path
) -> None:
    store = FileStoreView(tmp_path / "operator-store")
    server = make_server(store.settings)
    secrets: set[str] = set()
    done = threading.Event()

    def watch() -> None:  # the operator deletes its session: catch the secret while the record exists
        while not done.wait(0.02):
            try:
                secrets.update(r["replSecret"] for r in store.records("interactive").values())
            except (OSError, ValueError):
                continue  # a record replaced or removed between listing and reading

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        dag = dag_runner.write_dag(
            "livy_secret_probe",
            """
            LivySessionOperator(task_id="probe", statements=["x = 6 * 7", "print('x is', x)"],
                                polling_interval=1, dag=dag)
            """,
        )
        outcome = dag_runner.run(dag, "livy_secret_probe", connection_env(server))
    finally:
        done.set()
        watcher.join()
    assert outcome.task("probe")["state"] == "success", outcome.output[-3000:]
    assert "x is 42" in outcome.output, "the statement's output reached the task log"
    assert len(secrets) == 1, "the session's record was seen while it existed"
    secret = secrets.pop()
    assert secret not in outcome.output
    assert secret not in json.dumps(outcome.result)
    assert found(secret, {"server log": server.server_log()}) == []
