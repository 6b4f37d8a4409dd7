"""R statements (kind sparkr) in the REPL driver, over its HTTP API, with a real R and real Spark.

SparkR itself cannot be installed here (pip's pyspark has no R/lib, CRAN is out of reach), so
the R package this module installs is tests/fake_sparkr: a stand-in that speaks SparkR's wire
protocol to the real org.apache.spark.api.r.RBackend the driver starts (authentication with the
port and secret the driver hands R, JVM calls, job groups). Everything else is real: Rscript
runs the statements, Spark runs their jobs, cancel interrupts both; one session goes through the
real server too. Skipped without R, which CI does not install (it is large); the 400s naming what
is missing are tested through the server in test_sessions.py, R or not. The real SparkR case at
the end runs only where SparkR is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from airflow_provider_livy.server.repl.livy_repl.r_setup import RSetup, locate_sparkr
from airflow_provider_livy.server.repl.livy_repl.settings import Settings
from airflow_provider_livy.server.repl.livy_repl.sparkr import RInterpreter
from tests.conftest import kill_drivers, start_server
from tests.test_repl import Driver, start_driver

RSCRIPT = shutil.which("Rscript")
needs_r = pytest.mark.skipif(RSCRIPT is None, reason="R is not installed here (CI does not install it: it is large)")
STAND_IN = Path(__file__).parent / "fake_sparkr" / "SparkR"
SLEEPING_JOB = (
    'callJMethod(callJMethod(spark, "sql", '
    "\"SELECT * FROM range(2) WHERE reflect('java.lang.Thread', 'sleep', CAST(120000 AS BIGINT)) IS NULL\"), \"count\")"
)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An R library holding the SparkR stand-in (R CMD INSTALL: a few seconds)."""
    library = tmp_path_factory.mktemp("sparkr-library")
    assert RSCRIPT is not None
    done = subprocess.run(
        [str(Path(RSCRIPT).with_name("R")), "CMD", "INSTALL", "--no-docs", "--no-html", f"--library={library}", str(STAND_IN)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return library


@pytest.fixture(scope="module")
def r_driver(stand_in: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKR_PACKAGE_DIR", str(stand_in))
        driver = start_driver(tmp_path_factory.mktemp("sparkr"), spark=True, kind="sparkr")
    yield driver
    driver.stop()


@pytest.mark.spark
@needs_r
def test_r_statements_outputs_and_errors(r_driver: Driver) -> None:
    assert r_driver.text("1 + 1") == "[1] 2"
    assert r_driver.text("x <- 41\nx + 1") == "[1] 42"
    assert r_driver.text('cat("hello\\n")\nmessage("to stderr")\ninvisible(3)') == "hello\nto stderr"
    assert r_driver.text("x") == "[1] 41"  # state lives on between statements
    failed = r_driver.run('y <- 1\nstop("boom")')
    assert (failed["status"], failed["ename"], failed["evalue"]) == ("error", "Error", "boom")
    assert failed["traceback"][-1] == "Error: boom\n"
    inner = r_driver.run('f <- function() stop("deep")\nf()')
    assert inner["traceback"][-1] == "Error in f() : deep\n"
    syntax = r_driver.run("1 +* 2")
    assert syntax["ename"] == "Error" and "unexpected" in syntax["evalue"]
    assert r_driver.text("y") == "[1] 1"  # what ran before the error stays
    warned = r_driver.text('warning("careful")\n"after"')
    assert "careful" in warned and warned.endswith('[1] "after"')


@pytest.mark.spark
@needs_r
def test_r_on_the_sessions_sparksession(r_driver: Driver) -> None:
    """R calls into the driver's JVM through the RBackend: the SparkSession is Python's."""
    r_driver.run("spark.range(5).createOrReplaceTempView('five')", kind="pyspark")
    counted = r_driver.text('callJMethod(callJMethod(spark, "sql", "SELECT * FROM five"), "count")')
    assert counted == "[1] 5"
    assert r_driver.run("spark.table('five').count()", kind="python")["data"]["text/plain"] == "5"
    assert r_driver.post("/completion", {"code": "pri", "kind": "sparkr"}).json() == {"candidates": []}


@pytest.mark.spark
@needs_r
def test_r_cancel(r_driver: Driver) -> None:
    r_driver.text('kept <- "still here"')
    # blocked in a Spark job (its job group is cancelled); busy in R (SIGINT); waiting for a JVM call
    # that is no job (SIGINT while R reads the socket: the call's late answer is read before R goes on)
    for code in (SLEEPING_JOB, "Sys.sleep(120)", 'callJStatic("java.lang.Thread", "sleep", 4000L)'):
        statement = r_driver.submit(code)
        r_driver.wait(statement["id"], ("running",))
        time.sleep(1)
        started = time.monotonic()
        assert r_driver.post(f"/statements/{statement['id']}/cancel").json() == {"msg": "canceled"}
        done = r_driver.wait(statement["id"], ("cancelled",), timeout=60)
        assert time.monotonic() - started < 20, code
        assert done["output"]["status"] == "error"
    assert r_driver.text("kept") == '[1] "still here"'  # the same R process
    assert r_driver.text('callJMethod(callJMethod(spark, "sql", "SELECT * FROM range(3)"), "count")') == "[1] 3"


@pytest.mark.spark
@needs_r
def test_sparkr_session_through_the_server(stand_in: Path, tmp_path: Path) -> None:
    """The server's check passes where R and SparkR are (SPARKR_PACKAGE_DIR here), the session's
    statements run in R by default and in Python by their kind, on one SparkSession."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SPARKR_PACKAGE_DIR", str(stand_in))
        server = start_server(tmp_path, {"livy.spark.master": "local[1]"})
    try:
        created = server.post("/sessions", json={"kind": "r"})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert server.wait_for(sid, {"idle"}, path="/sessions", timeout=300)["kind"] == "sparkr"
        assert server.run(sid, "x <- 40 + 2\nx", timeout=300)["output"]["data"]["text/plain"] == "[1] 42"
        server.run(sid, "spark.range(4).createOrReplaceTempView('four')", kind="pyspark")
        counted = server.run(sid, 'callJMethod(callJMethod(spark, "sql", "SELECT * FROM four"), "count")', kind="sparkr")
        assert counted["output"]["data"]["text/plain"] == "[1] 4"
        failed = server.run(sid, 'stop("boom")')["output"]
        assert (failed["status"], failed["ename"], failed["evalue"]) == ("error", "Error", "boom")
        assert server.delete(f"/sessions/{sid}").json() == {"msg": "deleted"}
    finally:
        server.stop()
        kill_drivers(tmp_path)


@pytest.mark.spark
def test_real_sparkr(tmp_path: Path) -> None:
    """With the real SparkR package (a Spark distribution's R/lib, or R's library): never run here."""
    spark_home = str(resolve_spark_home(ServerConfig()))
    env = {key: value for key, value in os.environ.items() if key != "SPARKR_PACKAGE_DIR"}
    if isinstance(locate_sparkr(spark_home, {}, env), str):
        pytest.skip("the real SparkR package is not installed here")
    driver = start_driver(tmp_path, spark=True, kind="sparkr")
    try:
        assert driver.text("df <- as.DataFrame(faithful)\ncount(df)") == "[1] 272"
        assert driver.text('createOrReplaceTempView(df, "faithful")\nnrow(sql("SELECT * FROM faithful"))') == "[1] 272"
        assert driver.run("spark.table('faithful').count()", kind="pyspark")["data"]["text/plain"] == "272"
    finally:
        driver.stop()


def test_where_sparkr_is_looked_for(tmp_path: Path) -> None:
    """Spark's places, in Spark's order; R's own library is asked only when they have no SparkR."""
    r = {"spark.r.command": sys.executable}  # any executable stands for R: R itself is not asked here
    home = tmp_path / "spark"
    lib = home / "R" / "lib"
    lib.mkdir(parents=True)
    missing = locate_sparkr(str(home), r, {}, probe=False)
    assert isinstance(missing, str) and "SparkR R package is not installed" in missing
    assert "R is not installed" not in missing
    with zipfile.ZipFile(lib / "sparkr.zip", "w") as archive:  # what Spark ships to YARN
        archive.writestr("SparkR/DESCRIPTION", "Package: SparkR\n")
    setup = locate_sparkr(str(home), r, {}, probe=False)
    assert setup == RSetup(sys.executable, "", str(lib / "sparkr.zip"))
    interpreter = RInterpreter(None, Settings({"LIVY_REPL_SECRET": "s"}))
    unpacked = interpreter._library_path(setup)
    assert unpacked.startswith(".libPaths(c(") and interpreter.unpacked is not None
    assert (Path(interpreter.unpacked) / "SparkR" / "DESCRIPTION").is_file()
    interpreter.close()
    assert not Path(interpreter.unpacked).exists()
    (lib / "SparkR").mkdir()
    (lib / "SparkR" / "DESCRIPTION").write_text("Package: SparkR\n")  # a Spark distribution's R/lib
    assert locate_sparkr(str(home), r, {}, probe=False) == RSetup(sys.executable, str(lib), "")
    own = tmp_path / "own"
    (own / "SparkR").mkdir(parents=True)
    (own / "SparkR" / "DESCRIPTION").write_text("Package: SparkR\n")
    assert locate_sparkr(str(home), r, {"SPARKR_PACKAGE_DIR": str(own)}, probe=False).library == str(own)
