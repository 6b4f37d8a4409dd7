"""SQL statements (kind sql): spark.sql, its first rows as Livy's JSON table of schema and data."""

from __future__ import annotations

from typing import Any

from .outputs import error_output, json_value, no_spark_output
from .statement import Statement


def run_sql(spark: Any, stmt: Statement, limit: int) -> dict[str, Any]:
    """At most `limit` rows; `"truncated": true` when there were more (Livy cuts silently)."""
    if spark is None:
        return no_spark_output("sql")
    try:
        frame, rows = stmt.run_user_code(_query, spark, stmt.code, limit)
    except BaseException as exc:
        output = error_output(exc)
        output["traceback"] = []  # pyspark's frames say nothing about the query
        return output
    result: dict[str, Any] = {"schema": frame.schema.jsonValue(), "data": [json_value(list(row)) for row in rows[:limit]]}
    if len(rows) > limit:
        result["truncated"] = True
    return {"status": "ok", "data": {"application/json": result}}


def _query(spark: Any, code: str, limit: int) -> tuple[Any, list[Any]]:
    frame = spark.sql(code)
    return frame, frame.take(limit + 1)
