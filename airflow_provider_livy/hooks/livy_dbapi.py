"""A PEP 249 (DB-API 2.0) connection over a Livy `sql` session, for LivySqlHook and anything else.

`connect(hook)` creates a `sql` session and waits until it is idle; each `cursor.execute` runs one
statement in it and reads Livy's `{"schema", "data"}` answer; `close()` deletes the session, so a
connection used in a `with closing(...)` block (as Airflow's DbApiHook does) leaves nothing behind.

Parameters use the `pyformat` style (`%s` or `%(name)s`) and are quoted here as Spark SQL literals:
strings with `\\` and `'` escaped, so a value is always one literal and never SQL. Spark SQL has no
transactions: everything commits at once, `rollback` is not supported.

Rows are capped by the server (`livy.rsc.sql.num-rows`, 1000 by default, as in Livy): a capped
result logs a warning. Use `LIMIT` or write big results to storage.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from airflow_provider_livy.hooks.connection import LivyError
from airflow_provider_livy.hooks.livy import LivyHook
from airflow_provider_livy.hooks.waiting import WaitTimeout
from airflow_provider_livy.protocol import APPLICATION_JSON, IDLE, SQL, output_error

log = logging.getLogger(__name__)

apilevel = "2.0"
threadsafety = 1  # connections must not be shared between threads
paramstyle = "pyformat"


class Warning(Exception):
    pass


class Error(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# Spark's exceptions that mean "your SQL is wrong", not "the engine failed".
PROGRAMMING_ERRORS = ("AnalysisException", "ParseException", "AnalysisError")


class TypeObject:
    """A PEP 249 type object: equal to every Spark type name it stands for (`decimal(10,2)` is a decimal)."""

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and spark_base_type(other) in self.names

    def __hash__(self) -> int:
        return hash(self.names)

    def __repr__(self) -> str:
        return f"TypeObject{tuple(sorted(self.names))}"


STRING = TypeObject("string", "varchar", "char")
BINARY = TypeObject("binary")
NUMBER = TypeObject("byte", "short", "integer", "long", "float", "double", "decimal", "boolean")
DATETIME = TypeObject("date", "timestamp", "timestamp_ntz")
ROWID = TypeObject()

Date, Time, Timestamp = datetime.date, datetime.time, datetime.datetime


def DateFromTicks(ticks: float) -> datetime.date:
    return datetime.date.fromtimestamp(ticks)


def TimeFromTicks(ticks: float) -> datetime.time:
    return datetime.datetime.fromtimestamp(ticks).time()


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ticks)


def Binary(value: bytes) -> bytes:
    return bytes(value)


def spark_type_name(field_type: Any) -> str:
    """A schema field's type as a name: "integer", "decimal(10,2)", or "array"/"map"/"struct" for complex ones."""
    if isinstance(field_type, str):
        return field_type
    if isinstance(field_type, Mapping):
        return str(field_type.get("type") or "struct")
    return str(field_type)


def spark_base_type(name: str) -> str:
    return name.split("(", 1)[0].strip().lower()


_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


def describe_field(field: Mapping[str, Any]) -> tuple[Any, ...]:
    """One `description` entry: (name, type_code, display_size, internal_size, precision, scale, null_ok)."""
    type_code = spark_type_name(field.get("type"))
    precision = scale = None
    if match := _DECIMAL.match(type_code):
        precision, scale = int(match.group(1)), int(match.group(2))
    return (field.get("name"), type_code, None, None, precision, scale, field.get("nullable", True))


def python_value(value: Any, type_code: str) -> Any:
    """A JSON cell as the Python type its column's Spark type suggests (dates, timestamps, decimals, bytes)."""
    if value is None:
        return None
    base = spark_base_type(type_code)
    try:
        if base == "date" and isinstance(value, str):
            return datetime.date.fromisoformat(value)
        if base in ("timestamp", "timestamp_ntz") and isinstance(value, str):
            return datetime.datetime.fromisoformat(value)
        if base == "decimal" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            return decimal.Decimal(str(value))
        if base == "binary" and isinstance(value, str):
            return base64.b64decode(value)
    except ValueError:
        return value  # a server that renders the type differently: pass its value on untouched
    return value


# --- parameters ---------------------------------------------------------------------------------
def _string_literal(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ProgrammingError("a string parameter has invalid Unicode (a lone surrogate)") from None
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\x00", "\\u0000")
    return f"'{escaped}'"


def literal(value: Any) -> str:
    """A Python value as a Spark SQL literal of the matching type."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "CAST('NaN' AS DOUBLE)"
        if math.isinf(value):
            return f"CAST('{'-' if value < 0 else ''}Infinity' AS DOUBLE)"
        return f"{value!r}D"
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ProgrammingError(f"Spark decimals cannot hold {value}")
        return f"{value:f}BD"
    if isinstance(value, str):
        return _string_literal(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"X'{bytes(value).hex()}'"
    if isinstance(value, datetime.datetime):
        return f"TIMESTAMP {_string_literal(value.isoformat(sep=' '))}"
    if isinstance(value, datetime.date):
        return f"DATE {_string_literal(value.isoformat())}"
    if isinstance(value, datetime.time):
        return _string_literal(value.isoformat())
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        if not items:
            raise ProgrammingError("an empty sequence has no SQL form (IN () is not valid SQL)")
        return "(" + ", ".join(literal(item) for item in items) + ")"
    raise ProgrammingError(f"cannot pass a {type(value).__name__} as a Spark SQL parameter")


def render(operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None) -> str:
    """The statement with its parameters as literals (pyformat: `%s` or `%(name)s`; `%%` for a literal %)."""
    if parameters is None:
        return operation
    try:
        if isinstance(parameters, Mapping):
            return operation % {key: literal(value) for key, value in parameters.items()}
        if isinstance(parameters, (str, bytes)) or not isinstance(parameters, Sequence):
            raise ProgrammingError(f"parameters must be a sequence or a mapping, got {type(parameters).__name__}")
        return operation % tuple(literal(value) for value in parameters)
    except (TypeError, ValueError, KeyError) as err:
        raise ProgrammingError(f"the parameters do not fit the statement's placeholders: {err!r}") from None


# --- connection and cursor --------------------------------------------------------------------------
class Connection:
    """One Livy `sql` session. Not thread-safe. `close()` deletes the session."""

    def __init__(
        self,
        hook: LivyHook,
        session_id: int,
        *,
        polling_interval: float = 2.0,
        statement_timeout: float | None = None,
    ) -> None:
        self.hook = hook
        self.session_id = session_id
        self.polling_interval = polling_interval
        self.statement_timeout = statement_timeout
        self.autocommit = True  # Spark SQL has no transactions
        self.closed = False

    def cursor(self) -> Cursor:
        self._check_open()
        return Cursor(self)

    def commit(self) -> None:
        """Nothing to do: every Spark SQL statement takes effect at once."""
        self._check_open()

    def rollback(self) -> None:
        raise NotSupportedError("Spark SQL has no transactions to roll back")

    def close(self) -> None:
        """Delete the session (its Spark driver ends). Closing twice is fine."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.hook.delete_session(self.session_id):
                log.info("Deleted Livy sql session %s", self.session_id)
        except LivyError as err:
            raise OperationalError(f"could not delete Livy session {self.session_id}: {err}") from err
        finally:
            self.hook.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise InterfaceError(f"the connection (Livy session {self.session_id}) is closed")

    def run(self, sql: str) -> dict[str, Any]:
        """Run one sql statement; its `{"schema", "data"}`. Errors as PEP 249 exceptions."""
        self._check_open()
        try:
            statement = self.hook.run_statement(
                self.session_id, sql, SQL, polling_interval=self.polling_interval, timeout=self.statement_timeout
            )
        except WaitTimeout as err:
            raise OperationalError(f"{err}; it was cancelled") from err
        except LivyError as err:
            raise OperationalError(str(err)) from err
        output = statement.get("output")
        if statement["state"] != "available" or output is None:
            raise OperationalError(f"statement {statement['id']} of Livy session {self.session_id} ended {statement['state']}")
        error = output_error(output)
        if error is not None:
            raised = ProgrammingError if output.get("ename") in PROGRAMMING_ERRORS else DatabaseError
            raise raised(error)
        result = (output.get("data") or {}).get(APPLICATION_JSON)
        if not isinstance(result, Mapping):
            raise InterfaceError(f"statement {statement['id']} returned no {APPLICATION_JSON} result (not a sql session?)")
        return dict(result)


class Cursor:
    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._rows: list[tuple[Any, ...]] = []
        self._position = 0
        self.closed = False

    def execute(self, operation: str, parameters: Sequence[Any] | Mapping[str, Any] | None = None) -> Cursor:
        if self.closed:
            raise InterfaceError("the cursor is closed")
        result = self.connection.run(render(operation, parameters))
        fields = list(((result.get("schema") or {}).get("fields")) or [])
        self.description = [describe_field(field) for field in fields] or None
        types = [entry[1] for entry in self.description or []]
        self._rows = [tuple(python_value(v, t) for v, t in zip(row, types, strict=False)) for row in result.get("data") or []]
        self._position = 0
        self.rowcount = len(self._rows) if self.description else -1
        if result.get("truncated"):
            log.warning("Livy capped the result at %d rows (livy.rsc.sql.num-rows); the rest is not shown", len(self._rows))
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any] | Mapping[str, Any]]) -> Cursor:
        for parameters in seq_of_parameters:
            self.execute(operation, parameters)
        return self

    def _check_result(self) -> None:
        if self.description is None:
            raise ProgrammingError("the last statement returned no rows to fetch")

    def fetchone(self) -> tuple[Any, ...] | None:
        self._check_result()
        if self._position >= len(self._rows):
            return None
        self._position += 1
        return self._rows[self._position - 1]

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        self._check_result()
        size = self.arraysize if size is None else size
        rows = self._rows[self._position : self._position + size]
        self._position += len(rows)
        return rows

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._check_result()
        rows = self._rows[self._position :]
        self._position = len(self._rows)
        return rows

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while (row := self.fetchone()) is not None:
            yield row

    def close(self) -> None:
        self.closed = True

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    hook: LivyHook,
    *,
    name: str | None = None,
    conf: Mapping[str, str] | None = None,
    polling_interval: float = 2.0,
    start_timeout: float | None = 600.0,
    statement_timeout: float | None = None,
) -> Connection:
    """Create a `sql` session through `hook` and wait until it is idle; a session that fails to start is deleted."""
    body: dict[str, Any] = {"kind": SQL, "name": name, "conf": dict(conf) if conf else None}
    try:
        view = hook.create_session(body)
    except LivyError as err:
        raise OperationalError(f"Livy refused the sql session: {err}") from err
    session_id = int(view["id"])
    try:
        state = hook.wait_for_session(session_id, polling_interval, start_timeout)
        if state != IDLE:
            raise OperationalError(f"Livy sql session {session_id} ended {state} instead of starting")
    except BaseException as err:
        hook.delete_session(session_id)
        if isinstance(err, LivyError):
            raise OperationalError(str(err)) from err
        raise
    return Connection(hook, session_id, polling_interval=polling_interval, statement_timeout=statement_timeout)
