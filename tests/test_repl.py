"""The REPL that runs inside the Spark driver (server/repl/livy_repl, zipped by driver_file()), driven over its HTTP API.

One real Spark driver (spark-submit --master local[1] from the pyspark package) is shared by the
Spark tests of this module; the bookkeeping cases (retention, output cap, auth, idle exit, queue)
run the same file with LIVY_REPL_NO_SPARK=1 as plain Python, a fraction of a second each. The
callback the driver makes at start goes to a small HTTP receiver in the test: a real peer.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from airflow_provider_livy.server.repl import driver_file

SECRET = "test-secret-7f3a9c"
FINAL = ("available", "cancelled")


class CallbackReceiver:
    """The server's side of the driver's start-up callback: records what it was told, answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.calls.append((self.headers.get("Authorization", ""), body))
                receiver.arrived.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/internal/repl/7"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@dataclass
class Driver:
    """A running REPL driver and a client for its API."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    receiver: CallbackReceiver
    address: str = ""
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.http.headers["Authorization"] = f"Bearer {SECRET}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.receiver.arrived.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"driver never called back (exit {self.proc.poll()}):\n{self.log()}")
        self.address = self.receiver.calls[0][1]["address"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.http.get(self.address + path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.http.post(self.address + path, json=body, **kwargs)

    def submit(self, code: str, **extra: Any) -> dict[str, Any]:
        response = self.post("/statements", {"code": code, **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def wait(self, sid: int, states: tuple[str, ...] = FINAL, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        statement = self.get(f"/statements/{sid}").json()
        while True:
            if statement["state"] in states:
                return statement
            assert time.monotonic() < deadline, f"statement {sid} still {statement['state']}"
            statement = self.get(f"/statements/{sid}", params={"wait": 5}).json()

    def run(self, code: str, **extra: Any) -> dict[str, Any]:
        statement = self.wait(self.submit(code, **extra)["id"])
        assert statement["state"] == "available", statement
        return statement["output"]

    def text(self, code: str) -> str:
        output = self.run(code)
        assert output["status"] == "ok", output
        return output["data"]["text/plain"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            try:
                self.post("/shutdown", timeout=5)
                self.proc.wait(60)
            except (requests.RequestException, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.receiver.close()
        return self.proc.returncode


def start_driver(
    tmp_path: Path, spark: bool, callback_status: int = 200, main_file: Path | None = None, **settings: str
) -> Driver:
    """The REPL driver (driver_file(), unless `main_file` names another, as the benchmarks' older code), ready."""
    receiver = CallbackReceiver(callback_status)
    env = {
        **os.environ,
        "LIVY_REPL_SECRET": SECRET,
        "LIVY_REPL_CALLBACK": receiver.url,
        "LIVY_REPL_KIND": "pyspark",
        "PYTHONUNBUFFERED": "1",
        **{f"LIVY_REPL_{key.upper()}": value for key, value in settings.items()},
    }
    if spark:
        spark_submit = resolve_spark_home(ServerConfig()) / "bin" / "spark-submit"
        env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1")
        command = [
            str(spark_submit),
            "--master",
            "local[1]",
            "--name",
            "livy-session-test",
            "--conf",
            "spark.ui.enabled=false",
            str(main_file or driver_file()),
        ]
    else:
        env["LIVY_REPL_NO_SPARK"] = "1"
        command = [sys.executable, str(main_file or driver_file())]
    log_path = tmp_path / f"driver-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    driver = Driver(proc, log_path, receiver)
    try:
        driver.wait_ready(180 if spark else 20)
    except BaseException:
        driver.stop()
        raise
    return driver


@pytest.fixture(scope="module")
def spark_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    """One real Spark driver for the module (about 10 s to start)."""
    # Bound to all interfaces as in cluster mode: the address it reports is spark.driver.host's.
    driver = start_driver(tmp_path_factory.mktemp("repl"), spark=True, sql_rows="5", bind="0.0.0.0")
    yield driver
    driver.stop()


@pytest.fixture
def plain_driver(tmp_path: Path) -> Iterator[Driver]:
    """The same REPL without Spark: a fraction of a second to start."""
    driver = start_driver(tmp_path, spark=False, retained="4", max_output="2000")
    yield driver
    driver.stop()


# --- with real Spark ------------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_callback_variables_and_spark(spark_driver: Driver) -> None:
    authorization, body = spark_driver.receiver.calls[0]
    assert authorization == f"Bearer {SECRET}"
    driver_host = spark_driver.text("sc.getConf().get('spark.driver.host')").strip("'")
    assert body["address"] == f"http://{driver_host}:{body['address'].rsplit(':', 1)[1]}"
    assert body["appId"].startswith("local-")
    assert f"livy-repl: listening on {body['address']}" in spark_driver.log()
    assert SECRET not in spark_driver.log()
    assert spark_driver.text("x = 41\nprint('printed')\nx + 1") == "printed\n42"
    assert spark_driver.text("x") == "41"
    assert spark_driver.text("spark.range(7).count()") == "7"
    assert spark_driver.text("sc.parallelize(range(10)).map(lambda i: i * x).sum()") == str(41 * 45)
    completion = spark_driver.post("/completion", {"code": "y = spark.ran", "kind": "pyspark", "cursor": 13}).json()
    assert "spark.range(" in completion["candidates"]


@pytest.mark.spark
def test_spark_error_shape(spark_driver: Driver) -> None:
    output = spark_driver.run("def f(n):\n    return n / 0\nf(1)")
    assert output["status"] == "error"
    assert output["ename"] == "ZeroDivisionError"
    assert output["evalue"] == "division by zero"
    assert output["traceback"][0] == "Traceback (most recent call last):\n"
    assert "line 3, in <module>" in output["traceback"][1]
    assert "return n / 0" in output["traceback"][2]
    assert not any("driver.py" in line for line in output["traceback"])
    sql_error = spark_driver.run("SELECT nope FROM nowhere", kind="sql")
    assert sql_error["status"] == "error"
    assert sql_error["ename"] == "AnalysisException"
    assert "nowhere" in sql_error["evalue"]


@pytest.mark.spark
def test_spark_sql_schema_data_and_cap(spark_driver: Driver) -> None:
    spark_driver.text(
        "spark.createDataFrame([(1, 'a', 1.5), (2, None, float('nan'))], 'n int, s string, d double')"
        ".createOrReplaceTempView('t')"
    )
    output = spark_driver.run("SELECT n, s, d, DATE'2024-01-02' AS day FROM t ORDER BY n", kind="sql")
    result = output["data"]["application/json"]
    assert [(f["name"], f["type"]) for f in result["schema"]["fields"]] == [
        ("n", "integer"),
        ("s", "string"),
        ("d", "double"),
        ("day", "date"),
    ]
    assert result["data"] == [[1, "a", 1.5, "2024-01-02"], [2, None, "NaN", "2024-01-02"]]
    assert "truncated" not in result
    capped = spark_driver.run("SELECT id FROM range(100)", kind="sql")["data"]["application/json"]
    assert capped["data"] == [[0], [1], [2], [3], [4]]  # LIVY_REPL_SQL_ROWS=5
    assert capped["truncated"] is True
    exact = spark_driver.run("SELECT id FROM range(5)", kind="sql")["data"]["application/json"]
    assert len(exact["data"]) == 5
    assert "truncated" not in exact


@pytest.mark.spark
def test_spark_magics(spark_driver: Driver) -> None:
    output = spark_driver.run("rows = spark.sql('SELECT id, CAST(id AS STRING) AS s FROM range(3)').collect()\n%table rows")
    table = output["data"]["application/vnd.livy.table.v1+json"]
    assert table["headers"] == [{"name": "id", "type": "INT_TYPE"}, {"name": "s", "type": "STRING_TYPE"}]
    assert table["data"] == [[0, "0"], [1, "1"], [2, "2"]]
    assert "text/plain" not in output["data"]
    output = spark_driver.run("summary = {'count': spark.range(4).count(), 'names': ['a', 'b']}\n%json summary")
    assert output["data"]["application/json"] == {"count": 4, "names": ["a", "b"]}
    frame = spark_driver.run("%table spark.range(10)")["data"]["application/vnd.livy.table.v1+json"]
    assert len(frame["data"]) == 5  # a DataFrame is cut at LIVY_REPL_SQL_ROWS like sql
    missing = spark_driver.run("%json no_such_name")
    assert (missing["status"], missing["ename"]) == ("error", "NameError")


@pytest.mark.spark
def test_spark_progress(spark_driver: Driver) -> None:
    statement = spark_driver.submit("import time\nsc.parallelize(range(6), 6).map(lambda i: time.sleep(1) or i).sum()")
    seen = set()
    deadline = time.monotonic() + 120
    while (view := spark_driver.get(f"/statements/{statement['id']}").json())["state"] not in FINAL:
        seen.add(view["progress"])
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert view["output"]["data"]["text/plain"] == "15"
    assert view["progress"] == 1.0
    assert any(0 < fraction < 1 for fraction in seen), seen
    assert 0 < view["started"] <= view["completed"]


@pytest.mark.spark
def test_spark_cancel_sleep_and_job(spark_driver: Driver) -> None:
    spark_driver.text("kept = 'still here'")
    sleeping_job = "import time\nsc.parallelize(range(2), 2).map(lambda i: time.sleep(120)).count()"
    # No job: only the interrupt ends it, inside a Py4J call whose connection the kept error keeps alive.
    blocked_in_the_jvm = (
        "try:\n    spark._jvm.java.lang.Thread.sleep(20000)\nexcept BaseException as error:\n    kept_error = error\n    raise"
    )
    for code in ("import time\ntime.sleep(120)", sleeping_job, blocked_in_the_jvm):
        statement = spark_driver.submit(code)
        spark_driver.wait(statement["id"], ("running",))  # cancelled at once: its job may not be submitted yet
        assert spark_driver.get("/status").json()["state"] == "busy"
        started = time.monotonic()
        assert spark_driver.post(f"/statements/{statement['id']}/cancel").json() == {"msg": "canceled"}
        assert spark_driver.get(f"/statements/{statement['id']}").json()["state"] in ("cancelling", "cancelled")
        done = spark_driver.wait(statement["id"], ("cancelled",), timeout=30)
        assert time.monotonic() - started < 10, code
        assert done["output"]["status"] == "error"
        assert spark_driver.get("/status").json()["state"] == "idle"
        # The statement's Spark jobs are gone too, even one its interrupted Python call had just asked for.
        deadline = time.monotonic() + 30
        while spark_driver.text("sc.statusTracker().getActiveJobsIds()") != "[]":
            assert time.monotonic() < deadline, "a cancelled statement's job still runs"
            time.sleep(0.5)
        assert spark_driver.text("kept") == "'still here'"
        assert spark_driver.text("[spark._jvm.java.lang.Math.abs(-5), spark.range(3).count()]") == "[5, 3]"  # answers in step
        assert spark_driver.text("sc.parallelize(range(4), 2).count()") == "4"


@pytest.mark.spark
def test_spark_shutdown_stops_spark(spark_driver: Driver) -> None:
    assert spark_driver.post("/shutdown").json() == {"msg": "shutting down"}
    assert spark_driver.proc.wait(60) == 0
    assert "livy-repl: stopped" in spark_driver.log()


# --- without Spark: bookkeeping -------------------------------------------------------------------


def test_auth_required(plain_driver: Driver) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
        response = requests.get(plain_driver.address + "/status", headers=headers, timeout=10)
        assert response.status_code == 401
        assert "msg" in response.json()
    response = requests.post(plain_driver.address + "/statements", json={"code": "1"}, timeout=10)
    assert response.status_code == 401
    assert plain_driver.get("/statements").json()["total_statements"] == 0
    assert SECRET not in plain_driver.log()
    assert plain_driver.text("import os\nos.environ.get('LIVY_REPL_SECRET')") == ""  # not left to user code


def test_bad_requests_and_kinds(plain_driver: Driver) -> None:
    assert plain_driver.post("/statements", {"kode": "1"}).status_code == 400
    assert plain_driver.http.post(plain_driver.address + "/statements", data=b"{nope", timeout=10).status_code == 400
    assert plain_driver.get("/status", params={"wait": "soon"}).status_code == 400
    assert plain_driver.get("/statements/99").status_code == 404
    assert plain_driver.get("/nowhere").status_code == 404
    assert plain_driver.http.put(plain_driver.address + "/statements", json={"code": "1"}, timeout=10).status_code == 405
    host, port = plain_driver.address.removeprefix("http://").split(":")
    raw = http.client.HTTPConnection(host, int(port), timeout=10)
    raw.putrequest("POST", "/statements")
    raw.putheader("Authorization", f"Bearer {SECRET}")
    raw.putheader("Content-Length", "lots")
    raw.endheaders()
    answer = raw.getresponse()
    assert (answer.status, json.loads(answer.read())["msg"]) == (400, "Content-Length must be a number of bytes")
    raw.close()
    for kind, words in (("shared", "session kind"), ("sparkr", "R"), ("cobol", "unknown")):
        response = plain_driver.post("/statements", {"code": "1", "kind": kind})
        assert response.status_code == 400
        assert words in response.json()["msg"]
    assert plain_driver.text("1 + 1") == "2"  # still serving
    assert plain_driver.run("1 + 1", kind="python")["data"]["text/plain"] == "2"
    output = plain_driver.run("SELECT 1", kind="sql")
    assert output["status"] == "error"
    assert "LIVY_REPL_NO_SPARK" in output["evalue"]


def test_python_outputs(plain_driver: Driver) -> None:
    assert plain_driver.text("import sys\nprint('out')\nprint('err', file=sys.stderr)\nNone") == "out\nerr"
    assert plain_driver.text("s = 'text  \\n\\n'\ns") == repr("text  \n\n")
    assert plain_driver.text("print('trailing  \\n\\n ')") == "trailing"
    syntax = plain_driver.run("1 +")
    assert syntax["ename"] == "SyntaxError"
    assert syntax["traceback"][-1].startswith("SyntaxError")
    table = plain_driver.run("rows = [{'a': 1, 'b': None}, {'a': 2, 'b': 'x'}]\n%table rows")
    assert table["data"]["application/vnd.livy.table.v1+json"] == {
        "headers": [{"name": "a", "type": "INT_TYPE"}, {"name": "b", "type": "STRING_TYPE"}],
        "data": [[1, None], [2, "x"]],
    }
    mixed = plain_driver.run("rows = [[1], ['one']]\n%table rows")
    assert mixed["status"] == "error"
    assert "different types" in mixed["evalue"]
    unknown = plain_driver.run("%nope x")
    assert "unknown magic" in unknown["evalue"]
    matplot = plain_driver.run("%matplot plt")["evalue"]  # without matplotlib, a clear word; with it, plt is undefined
    assert ("matplotlib" if importlib.util.find_spec("matplotlib") is None else "'plt' is not defined") in matplot
    assert plain_driver.run("input()")["ename"] == "EOFError"  # never hangs waiting for a terminal
    plain_driver.text("import io, sys\nsys.stdout = io.StringIO()")
    assert plain_driver.text("print('captured again')") == "captured again"


def test_retention_keeps_the_last_statements(plain_driver: Driver) -> None:
    for value in range(6):
        assert plain_driver.text(f"{value} * 10") == str(value * 10)
    listing = plain_driver.get("/statements").json()
    assert listing["total_statements"] == 4  # LIVY_REPL_RETAINED=4
    assert [s["id"] for s in listing["statements"]] == [2, 3, 4, 5]
    assert plain_driver.get("/statements/1").status_code == 404
    desc = plain_driver.get("/statements", params={"order": "desc", "from": 1, "size": 2}).json()
    assert [s["id"] for s in desc["statements"]] == [4, 3]
    assert plain_driver.submit("6")["id"] == 6


def test_queue_order_cancel_waiting_and_bound(plain_driver: Driver) -> None:
    first = plain_driver.submit("import time\ntime.sleep(120)")
    second = plain_driver.submit("order = 'second ran'")
    third = plain_driver.submit("order")
    fourth = plain_driver.submit("'fourth'")
    refused = plain_driver.post("/statements", {"code": "1"})
    assert refused.status_code == 429  # 4 retained, none finished: nothing may be dropped
    plain_driver.post(f"/statements/{fourth['id']}/cancel")
    assert plain_driver.get(f"/statements/{fourth['id']}").json()["state"] == "cancelled"
    plain_driver.wait(first["id"], ("running",))
    plain_driver.post(f"/statements/{first['id']}/cancel")
    assert plain_driver.wait(first["id"])["state"] == "cancelled"
    assert plain_driver.wait(second["id"])["state"] == "available"
    assert plain_driver.wait(third["id"])["output"]["data"]["text/plain"] == "'second ran'"
    assert plain_driver.wait(fourth["id"])["output"] is None
    assert plain_driver.get("/status").json()["statements"] == {"run": 2, "failed": 0, "cancelled": 2}
    plain_driver.run("1 / 0")
    assert plain_driver.get("/status").json()["statements"] == {"run": 3, "failed": 1, "cancelled": 2}


def test_output_cap(plain_driver: Driver) -> None:
    text = plain_driver.text("print('x' * 100000)")
    assert len(text.encode()) < 2000
    assert text.startswith("xxx")
    assert text.endswith("[livy-repl: output truncated at 2000 bytes (livy.rsc.statement.max-output-bytes)]")
    big_json = plain_driver.run("data = list(range(5000))\n%json data")
    assert "application/json" not in big_json["data"]
    assert "application/json output" in big_json["data"]["text/plain"]
    error = plain_driver.run("raise ValueError('v' * 10000)")
    assert error["ename"] == "ValueError"
    assert len(json.dumps(error).encode()) <= 2000
    assert "truncated" in error["evalue"]
    for statement in plain_driver.get("/statements").json()["statements"]:
        assert len(json.dumps(statement["output"]).encode()) <= 2000


def test_status_long_poll(plain_driver: Driver) -> None:
    status = plain_driver.get("/status").json()
    assert status["state"] == "idle"
    started = time.monotonic()
    assert plain_driver.get("/status", params={"wait": 0.5, "version": status["version"]}).json() == status
    assert time.monotonic() - started >= 0.45
    threading.Timer(0.3, lambda: plain_driver.submit("import time\ntime.sleep(0.5)")).start()
    started = time.monotonic()
    woke = plain_driver.get("/status", params={"wait": 10, "version": status["version"]}).json()
    assert time.monotonic() - started < 5
    assert woke["version"] > status["version"]
    assert woke["lastActivity"] >= status["lastActivity"]
    started = time.monotonic()
    assert plain_driver.get("/status", params={"wait": 10, "version": -1}).json()["version"] >= woke["version"]
    assert time.monotonic() - started < 5  # a version other than the current one answers at once


def test_idle_exit(tmp_path: Path) -> None:
    driver = start_driver(tmp_path, spark=False, idle_timeout="1.5")
    try:
        for _ in range(5):  # authenticated requests keep it alive, an in-flight long poll too
            assert driver.get("/status", params={"wait": 0.4}).status_code == 200
        last_authenticated = time.monotonic()
        while driver.proc.poll() is None and time.monotonic() - last_authenticated < 8:
            with contextlib.suppress(requests.ConnectionError):  # unauthenticated: they do not count
                assert requests.get(driver.address + "/status", timeout=5).status_code == 401
            time.sleep(0.2)
        assert driver.proc.wait(5) == 0
        assert time.monotonic() - last_authenticated < 4
        assert "no authenticated request for 1.5 s" in driver.log()
    finally:
        driver.stop()


def test_callback_refused_stops_the_driver(tmp_path: Path) -> None:
    driver = start_driver(tmp_path, spark=False, callback_status=404)
    try:
        assert driver.proc.wait(10) == 0
        assert "the server answered the callback with 404" in driver.log()
    finally:
        driver.stop()


def test_matplot(tmp_path: Path) -> None:
    """%matplot as sparkmagic users plot (matplotlib is a test dependency, not the package's)."""
    driver = start_driver(tmp_path, spark=False)  # the default output cap: a plot is 30 KB
    try:
        code = "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\n%matplot plt"
        output = driver.run(code)
        assert output["status"] == "ok", output
        assert base64.b64decode(output["data"]["image/png"]).startswith(b"\x89PNG\r\n")
    finally:
        driver.stop()
