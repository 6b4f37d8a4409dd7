"""Statement outputs in Livy's shapes: values as JSON, %table/%json/%matplot, errors, and the size cap."""

from __future__ import annotations

import base64
import datetime
import decimal
import io
import json
import math
import traceback
from typing import Any

from .frames import is_own

TABLE_MIME = "application/vnd.livy.table.v1+json"
# The markers name the server key a user sets (the driver reads it as LIVY_REPL_MAX_OUTPUT).
TRUNCATION_MARKER = "\n[livy-repl: output truncated at {limit} bytes (livy.rsc.statement.max-output-bytes)]"
DROPPED_MARKER = (
    "[livy-repl: the {mime} output ({size} bytes) is over {limit} bytes (livy.rsc.statement.max-output-bytes) and was dropped]"
)


def json_value(value: Any, strict: bool = False) -> Any:
    """A value JSON can carry: Rows become objects, dates ISO strings, binary base64.

    With strict, an object of no known type is an error (for %json) instead of its str().
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, decimal.Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else json_value(float(value))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, tuple) and hasattr(value, "__fields__"):  # pyspark.sql.Row
        return {name: json_value(item, strict) for name, item in zip(value.__fields__, value, strict=False)}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(item, strict) for item in value]
    if isinstance(value, dict):
        return {str(key): json_value(item, strict) for key, item in value.items()}
    if strict:
        raise TypeError(f"a {type(value).__name__} cannot be shown as JSON")
    return str(value)


def _table_cell(value: Any) -> tuple[str, Any]:
    """Livy's table type name for a Python value, and the value as the table carries it."""
    if value is None:
        return "NULL_TYPE", None
    if isinstance(value, bool):
        return "BOOLEAN_TYPE", value
    if isinstance(value, int):
        return "INT_TYPE", value
    if isinstance(value, float):
        return "DOUBLE_TYPE", json_value(value)
    if isinstance(value, datetime.datetime):
        return "TIMESTAMP_TYPE", str(value)
    if isinstance(value, datetime.date):
        return "DATE_TYPE", str(value)
    if isinstance(value, decimal.Decimal):
        return "DECIMAL_TYPE", str(value)
    if isinstance(value, tuple) and hasattr(value, "__fields__"):
        return "MAP_TYPE", json_value(value)
    if isinstance(value, list | tuple):
        return "ARRAY_TYPE", json_value(value)
    if isinstance(value, dict):
        return "MAP_TYPE", json_value(value)
    return "STRING_TYPE", str(value)


def table_output(value: Any, max_rows: int) -> dict[str, Any]:
    """%table: rows (Rows, dicts, sequences or scalars; or a Spark DataFrame) as Livy's table JSON."""
    if hasattr(value, "schema") and hasattr(value, "take"):  # a Spark DataFrame
        value = value.take(max_rows)
    if not isinstance(value, list | tuple):
        value = [value]
    headers: dict[str, dict[str, str]] = {}
    data = []
    for row in value:
        if isinstance(row, tuple) and hasattr(row, "__fields__"):
            cells = list(zip(row.__fields__, row, strict=False))
        elif isinstance(row, dict):
            cells = [(str(key), item) for key, item in row.items()]
        elif isinstance(row, list | tuple):
            cells = [(str(index), item) for index, item in enumerate(row)]
        else:
            cells = [("0", row)]
        out = []
        for name, item in cells:
            kind, cell = _table_cell(item)
            header = headers.setdefault(name, {"name": name, "type": kind})
            if header["type"] == "NULL_TYPE":
                header["type"] = kind
            elif kind not in ("NULL_TYPE", header["type"]):
                raise TypeError(f"table rows have different types in column '{name}': {header['type']} and {kind}")
            out.append(cell)
        data.append(out)
    return {TABLE_MIME: {"headers": list(headers.values()), "data": data}}


def matplot_output(value: Any) -> dict[str, Any]:
    """%matplot: the current figure of a pyplot module (or a Figure) as a base64 PNG."""
    figure = value.gcf() if hasattr(value, "gcf") else value
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii")}


MAGICS = ("table", "json", "matplot")


def cap_output(output: dict[str, Any], limit: int) -> dict[str, Any]:
    """Keep one statement's output within `limit` bytes of JSON, with a marker saying what was cut."""
    size = len(json.dumps(output).encode())
    if size <= limit:
        return output
    budget = max(limit - 512, limit // 2)
    if output["status"] == "error":
        evalue = _cut(output["evalue"], budget // 2, limit)
        lines, used = [], len(evalue.encode())
        for line in reversed(output["traceback"]):  # the frames nearest the error matter most
            used += len(line.encode()) + 8
            if used > budget:
                lines.append(TRUNCATION_MARKER.format(limit=limit).strip() + "\n")
                break
            lines.append(line)
        return {**output, "evalue": evalue, "traceback": lines[::-1]}
    data = dict(output["data"])
    text = data.pop("text/plain", "")
    notes = []
    for mime in list(data):
        mime_size = len(json.dumps(data[mime]).encode())
        if mime_size > budget // 2:
            del data[mime]
            notes.append(DROPPED_MARKER.format(mime=mime, size=mime_size, limit=limit))
    room = budget - len(json.dumps(data).encode()) - sum(len(note) + 1 for note in notes)
    text = _cut(text, room, limit)
    text = "\n".join([text, *notes]) if text else "\n".join(notes)
    return {**output, "data": {"text/plain": text, **data}}


def _cut(text: str, room: int, limit: int) -> str:
    """The text cut to about `room` bytes of UTF-8 (JSON escapes counted), marker included."""
    if len(json.dumps(text).encode()) <= room:
        return text
    marker = TRUNCATION_MARKER.format(limit=limit)
    room = max(0, room - len(marker) - 2)
    cut = text[:room]
    while cut and len(json.dumps(cut).encode()) > room:
        cut = cut[: max(0, len(cut) - max(1, (len(json.dumps(cut).encode()) - room) // 2))]
    return cut + marker


def error_output(exc: BaseException, tb: Any = None) -> dict[str, Any]:
    """Livy's error shape, with the traceback of user frames only (the REPL's own frames skipped)."""
    report = traceback.TracebackException(type(exc), exc, tb)
    report.stack = traceback.StackSummary.from_list([frame for frame in report.stack if not is_own(frame.filename)])
    lines = list(report.format())
    return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": lines}


def plain_error(ename: str, evalue: str) -> dict[str, Any]:
    """An error output without a traceback (nothing in it would help)."""
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": []}


def no_spark_output(kind: str) -> dict[str, Any]:
    return plain_error("RuntimeError", f"{kind} needs Spark (LIVY_REPL_NO_SPARK is set)")
