"""Credentials in a session's conf reach its launch, and nothing else: not its view, listing, UI page or record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_livy.server.redaction import REDACTED, redact
from tests.conftest import LivyServer
from tests.state_store import FileStoreView

CREDENTIALS = {
    "spark.openlineage.transport.auth.apiKey": "Bearer ol-key-5e3a",
    "spark.hadoop.fs.s3a.secret.key": "s3-secret-77c1",
    "spark.hadoop.fs.s3a.access.key": "s3-access-0b9d",
    "spark.jdbc.url": "jdbc:postgresql://db/x?user=etl&password=pg-pass-41f2",
}
PLAIN = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "3"}


def test_redact_follows_sparks_rule_and_api_keys_and_copies() -> None:
    conf = {**CREDENTIALS, **PLAIN, "spark.app.token-cache": "on"}
    shown = redact(conf)
    assert shown == {**dict.fromkeys(CREDENTIALS, REDACTED), **PLAIN, "spark.app.token-cache": REDACTED}
    assert conf["spark.hadoop.fs.s3a.secret.key"] == "s3-secret-77c1", "the caller's conf is not changed"


def test_session_conf_credentials_reach_the_launch_only(
    make_server: Callable[..., LivyServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launches = tmp_path / "spark-submit-args"
    monkeypatch.setenv("FAKE_SPARK_ARGS_FILE", str(launches))  # the fake spark-submit appends its arguments
    store = FileStoreView(tmp_path / "store")
    server = make_server(store.settings)
    session = server.open_session(kind="pyspark", conf={**CREDENTIALS, **PLAIN})
    sid = session["id"]

    argv = launches.read_text()
    assert all(f"{key}={value}" in argv for key, value in {**CREDENTIALS, **PLAIN}.items()), "the launch gets the conf as asked"
    view = server.get(f"/sessions/{sid}").json()
    assert view["conf"] == {**dict.fromkeys(CREDENTIALS, REDACTED), **PLAIN}
    shown = [
        json.dumps(view),
        json.dumps(server.get("/sessions").json()),
        server.get(f"/ui/sessions/{sid}").text,
        (store.root / "v1" / "interactive" / str(sid)).read_text(),
        server.server_log(),
    ]
    leaked = [value for value in CREDENTIALS.values() for text in shown if value.split("=")[-1].split()[-1] in text]
    assert leaked == []
    assert server.delete(f"/sessions/{sid}").json() == {"msg": "deleted"}
