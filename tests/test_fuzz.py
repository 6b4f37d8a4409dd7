"""Property-based fuzzing of the running server against its own OpenAPI description (schemathesis).

Schemathesis generates valid and invalid requests for every operation in GET /openapi.json and
fails on any 5xx, on an undocumented status, content type or response shape, on invalid data
accepted, and on a server that stops answering. A bigger run: FUZZ_EXAMPLES=2000 (per operation).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from tests.conftest import FAKE_SPARK_HOME, LivyServer, start_server

EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "80"))  # 2,300 requests here
MIN_REQUESTS = 1000
SENT: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivyServer]:
    work_dir = tmp_path_factory.mktemp("fuzz")
    (work_dir / "job.py").write_text("print('fuzzed')\n")
    server = start_server(
        work_dir,
        {
            "livy.server.spark-home": str(FAKE_SPARK_HOME),
            "livy.server.session.state-retain.sec": "5s",
            "livy.server.batch.state-wait.max": "50ms",  # generated long polls of running batches stay short
            # Generated POST /sessions each start a (Spark-less) REPL: a cap, and idle ones end soon.
            "livy.server.session.max-sessions": "40",
            "livy.server.session.timeout": "20s",
        },
    )
    for index in range(5):  # real batches, so that generated keys such as "0" meet one
        server.submit(file=str(work_dir / "job.py"), name=f"fuzz-{index}", args=["sleep=60" if index % 2 else "lines=20"])
    for index in range(2):  # and real sessions, so statements are reached
        server.open_session(name=f"fuzz-session-{index}", idleTimeout="1h")
    yield server
    server.stop()


def load_schema(server: LivyServer) -> schemathesis.BaseSchema:
    config = SchemathesisConfig.from_dict(
        {
            # A schema-valid body can still name a file that is missing or outside the whitelist,
            # which only the server can know: 400 is a correct answer to valid-looking data. So are
            # 409 for a statement call on a session that has ended (a generated DELETE, or its idle
            # timeout, ended it) and 429 when its driver's statement queue is full.
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2XX", "400", "404", "409", "429", "503"]}},
        }
    )
    return schemathesis.openapi.from_url(server.url + "/openapi.json", config=config)


# One hypothesis run per operation and mode inside one test: schemathesis' pytest integration
# (from_fixture) does not work with pytest 9, and the server must be up before the schema loads.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_server_keeps_to_its_description(mode: GenerationMode, fuzz_server: LivyServer) -> None:
    operations = [result.ok() for result in load_schema(fuzz_server).get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:
        raw = operation.definition.raw
        typed = raw.get("requestBody") or any(p["in"] == "query" for p in raw.get("parameters", []))
        if mode is GenerationMode.NEGATIVE and not typed:
            continue  # nothing to make invalid: no parameters, or only the free-form {key} string

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate, Phase.shrink],
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(session=fuzz_server.session, headers={"X-Requested-By": "fuzz"}, timeout=10)
            SENT[f"{case.method} {case.path}"] += 1
            STATUSES[response.status_code] += 1
            if case.method == "POST" and case.path == "/sessions" and response.status_code == 201:
                # Each starts a REPL: without this, valid bodies fill max-sessions and the rest get its 503
                # (tested in test_sessions). DELETE is fuzzed on its own.
                assert fuzz_server.delete(f"/sessions/{response.json()['id']}").status_code == 200

        call()


def test_fuzz_run_was_big_enough_and_the_server_still_answers(fuzz_server: LivyServer) -> None:
    """Runs after the fuzz cases in this module (pytest keeps file order)."""
    if not SENT:
        pytest.skip("the fuzz cases were deselected")
    total = sum(SENT.values())
    print(f"\nfuzz: {total} requests; by operation {dict(SENT)}; by status {dict(sorted(STATUSES.items()))}")
    assert total >= MIN_REQUESTS
    assert not [status for status in STATUSES if status >= 500]
    assert fuzz_server.proc.poll() is None, "the server exited"
    assert requests.get(fuzz_server.url + "/version", timeout=5).ok
    listed = fuzz_server.get("/batches", params={"size": 10000}).json()
    assert listed["total"] == len(listed["sessions"])
    driver_logs = Path(fuzz_server.settings["livy.server.log-dir"])
    assert "Traceback" not in fuzz_server.server_log(), "the server logged an unexpected error"
    assert driver_logs.is_dir()
