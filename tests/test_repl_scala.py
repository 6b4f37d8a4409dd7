"""Scala statements (kind spark) and sessions of several kinds in the REPL driver, over its HTTP API.

One real Spark driver of kind `spark` (spark-submit --master local[1]) serves every real case: Scala
runs in the Scala REPL from pyspark's jars on the same SparkSession as Python and SQL statements of
that session (per-statement kind). The `shared` bookkeeping runs without Spark.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_repl import Driver, start_driver

TABLE = "application/vnd.livy.table.v1+json"


@pytest.fixture(scope="module")
def scala_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    driver = start_driver(tmp_path_factory.mktemp("scala"), spark=True, kind="spark", sql_rows="5")
    yield driver
    driver.stop()


@pytest.mark.spark
def test_scala_values_jobs_and_errors(scala_driver: Driver) -> None:
    assert scala_driver.text("val x = 40 + 2") == "val x: Int = 42"
    assert scala_driver.text("spark.range(10).count()").endswith(": Long = 10")
    # A closure over a REPL value runs on executors, which load the REPL's classes.
    assert scala_driver.text("sc.parallelize(1 to 4, 2).map(_ * x).sum()").endswith(": Double = 420.0")
    printed = scala_driver.text('println("hello")\nspark.range(2).toDF("n").show()')
    assert printed.startswith("hello\n+---+\n|  n|")
    compile_error = scala_driver.run('val y: Int = "s"')
    assert (compile_error["status"], compile_error["ename"]) == ("error", "Error")
    assert "type mismatch" in compile_error["evalue"]
    assert any("required: Int" in line for line in compile_error["traceback"])
    runtime = scala_driver.run('throw new IllegalStateException("boom")')
    assert (runtime["status"], runtime["ename"], runtime["evalue"]) == ("error", "java.lang.IllegalStateException", "boom")
    assert isinstance(runtime["traceback"], list)
    assert scala_driver.run("class A {")["evalue"] == "incomplete statement"
    assert scala_driver.text("// only a comment") == ""
    assert scala_driver.text("x").endswith(": Int = 42")  # state survives errors


@pytest.mark.spark
def test_scala_completion(scala_driver: Driver) -> None:
    def complete(code: str, cursor: int | None = None, kind: str = "spark") -> list[str]:
        body = {"code": code, "kind": kind, **({"cursor": cursor} if cursor is not None else {})}
        response = scala_driver.post("/completion", body)
        assert response.status_code == 200, response.text
        return response.json()["candidates"]

    scala_driver.text("val abc = 1\nval abd = 2")
    assert complete("spark.ran") == ["range"]  # the overloads once
    assert {"abc", "abd", "abs"} == set(complete("ab", kind="scala"))  # abs: spark-shell's functions._ import
    assert set(complete("abc.toS")) == {"toShort", "toString"}
    assert complete("val n = spark.ran + 1", cursor=len("val n = spark.ran")) == ["range"]
    assert complete("no_such_name.") == []
    assert "count" in complete("spark.range(3).co")
    assert scala_driver.text("abc + abd").endswith(": Int = 3")  # completion left no output behind


@pytest.mark.spark
def test_scala_definitions_and_magics(scala_driver: Driver) -> None:
    defined = scala_driver.text('case class Person(name: String, age: Int)\nval people = Seq(Person("ann", 31), Person("bo", 7))')
    assert defined.splitlines() == ["class Person", "val people: Seq[Person] = List(Person(ann,31), Person(bo,7))"]
    assert scala_driver.text("def older(p: Person) = p.copy(age = p.age + 1)\nolder(people(1)).age").endswith(": Int = 8")
    table = scala_driver.run("%table people")["data"]
    assert table[TABLE] == {
        "headers": [{"name": "name", "type": "STRING_TYPE"}, {"name": "age", "type": "INT_TYPE"}],
        "data": [["ann", 31], ["bo", 7]],
    }
    assert "text/plain" not in table
    frame = scala_driver.run('val frame = people.toDF()\n%json frame.filter("age > 10")')["data"]
    assert frame["application/json"] == [{"name": "ann", "age": 31}]
    assert frame["text/plain"].startswith("val frame: org.apache.spark.sql.DataFrame")
    assert len(scala_driver.run("%table spark.range(100)")["data"][TABLE]["data"]) == 5  # LIVY_REPL_SQL_ROWS
    assert scala_driver.run("%json no_such_value")["ename"] == "Error"
    assert scala_driver.run("%plot people")["ename"] == "UnknownMagic"


@pytest.mark.spark
def test_one_sparksession_for_python_scala_and_sql(scala_driver: Driver) -> None:
    made = scala_driver.run("spark.range(7).createOrReplaceTempView('seven')\nspark.sparkContext.applicationId", kind="pyspark")
    app_id = made["data"]["text/plain"].strip("'")
    assert scala_driver.text('spark.table("seven").count()').endswith(": Long = 7")
    assert scala_driver.text("sc.applicationId").endswith(f"= {app_id}")
    assert scala_driver.text('spark.range(3).createOrReplaceTempView("three")').strip() == ""
    answer = scala_driver.run("SELECT count(*) AS n FROM seven JOIN three USING (id)", kind="sql")
    assert answer["data"]["application/json"]["data"] == [[3]]
    assert scala_driver.run("spark.table('three').count()", kind="python")["data"]["text/plain"] == "3"


@pytest.mark.spark
def test_scala_cancel(scala_driver: Driver) -> None:
    scala_driver.text('val kept = "still here"')
    sleeping_job = "sc.parallelize(1 to 2, 2).map { i => Thread.sleep(120000); i }.count()"
    for code in (sleeping_job, "Thread.sleep(120000)"):
        statement = scala_driver.submit(code)
        scala_driver.wait(statement["id"], ("running",))
        time.sleep(1)
        started = time.monotonic()
        assert scala_driver.post(f"/statements/{statement['id']}/cancel").json() == {"msg": "canceled"}
        done = scala_driver.wait(statement["id"], ("cancelled",), timeout=60)
        assert time.monotonic() - started < 20, code
        assert done["output"]["status"] == "error"
        assert scala_driver.get("/status").json()["state"] == "idle"
    assert scala_driver.text("kept").endswith("= still here")
    assert scala_driver.text("Thread.sleep(10); sc.parallelize(1 to 4, 2).count()").endswith(": Long = 4")


def test_shared_session_kinds(tmp_path: Path) -> None:
    driver = start_driver(tmp_path, spark=False, kind="shared")
    try:
        response = driver.post("/statements", {"code": "1 + 1"})
        assert response.status_code == 400
        assert all(kind in response.json()["msg"] for kind in ("pyspark", "spark", "sql"))
        assert driver.post("/statements", {"code": "1", "kind": "shared"}).status_code == 400
        assert driver.run("1 + 1", kind="pyspark")["data"]["text/plain"] == "2"
        assert driver.run("1 + 1", kind="scala")["evalue"] == "spark needs Spark (LIVY_REPL_NO_SPARK is set)"
    finally:
        driver.stop()
