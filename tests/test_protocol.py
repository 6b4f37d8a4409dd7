"""The shared protocol definitions: what a session or statement request may hold."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_livy.protocol import (
    ACTIVE_STATES,
    SESSION_STATES,
    TERMINAL_STATES,
    BatchRequestError,
    duration_seconds,
    validate_completion_request,
    validate_session_request,
    validate_statement_request,
)


def test_session_request_normalises_kind_and_drops_nulls() -> None:
    assert validate_session_request({}) == {"kind": "pyspark"}
    assert validate_session_request({"kind": "python", "name": None}) == {"kind": "pyspark"}
    assert validate_session_request({"kind": "scala"})["kind"] == "spark"
    full = {
        "kind": "sql",
        "proxyUser": "alice",
        "jars": ["/a.jar"],
        "pyFiles": [],
        "files": [],
        "archives": [],
        "driverMemory": "1g",
        "driverCores": 1,
        "executorMemory": "512m",
        "executorCores": 2,
        "numExecutors": 3,
        "queue": "q",
        "name": "nb-1",
        "conf": {"spark.x": "y"},
        "heartbeatTimeoutInSecond": 60,
        "ttl": "2h",
        "idleTimeout": "10m",
    }
    assert validate_session_request(full) == full


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "cobol"}, "unknown session kind"),
        ({"file": "x.py"}, "unknown field"),
        ({"heartbeatTimeoutInSecond": -1}, "0 or more"),
        ({"heartbeatTimeoutInSecond": "60"}, "integer"),
        ({"ttl": "600"}, "duration"),
        ({"idleTimeout": 60}, "duration"),
        ({"name": "123"}, "all digits"),
        ({"driverMemory": "lots"}, "size"),
        ([], "JSON object"),
    ],
)
def test_bad_session_requests(body: Any, words: str) -> None:
    with pytest.raises(BatchRequestError, match=words):
        validate_session_request(body)


def test_statement_and_completion_requests() -> None:
    assert validate_statement_request({"code": "1 + 1"}) == {"code": "1 + 1"}
    assert validate_statement_request({"code": "select 1", "kind": "sql"})["kind"] == "sql"
    assert validate_statement_request({"code": "x", "kind": "python"})["kind"] == "pyspark"
    with pytest.raises(BatchRequestError, match="'code' is required"):
        validate_statement_request({"kind": "sql"})
    assert validate_statement_request({"code": "val x = 1", "kind": "scala"})["kind"] == "spark"
    assert validate_statement_request({"code": "1 + 1", "kind": "r"})["kind"] == "sparkr"
    with pytest.raises(BatchRequestError, match="not supported"):  # a session kind only
        validate_statement_request({"code": "1", "kind": "shared"})
    with pytest.raises(BatchRequestError, match="unknown field"):
        validate_statement_request({"code": "1", "cursor": 1})
    assert validate_completion_request({"code": "spark.ra"}) == {"code": "spark.ra", "cursor": 8}
    assert validate_completion_request({"code": "sp", "kind": "pyspark", "cursor": 1})["cursor"] == 1
    with pytest.raises(BatchRequestError, match="0 or more"):
        validate_completion_request({"code": "sp", "cursor": -2})


def test_states_and_durations() -> None:
    assert "running" not in SESSION_STATES  # sparkmagic raises on a state outside Livy's interactive set
    assert {"idle", "busy", "not_started", "shutting_down"} <= ACTIVE_STATES
    assert not ACTIVE_STATES & TERMINAL_STATES
    assert duration_seconds("10m") == 600 and duration_seconds("1.5h") == 5400
    assert duration_seconds("600") is None and duration_seconds("soon") is None
