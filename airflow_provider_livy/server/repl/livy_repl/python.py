"""Python statements (kind pyspark): run as a Python shell runs them, in one namespace with spark and sc.

`text/plain` is what the code printed, then the repr of a final expression; a last line `%table x`,
`%json x` or `%matplot x` adds a structured output instead (outputs.py).
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import linecache
import rlcompleter
import sys
from typing import Any

from .capture import CaptureSink
from .outputs import MAGICS, error_output, json_value, matplot_output, table_output
from .settings import Settings
from .statement import Statement


def statement_filename(sid: int) -> str:
    """The file name a statement's code has in tracebacks (its lines are in linecache while it is retained)."""
    return f"<statement {sid}>"


class PythonInterpreter:
    """The namespace statements share, and the capture of what they print (main thread only)."""

    def __init__(self, settings: Settings, spark: Any) -> None:
        self.settings = settings
        self.sink = CaptureSink()
        self.streams = (sys.stdout, sys.stderr)  # main() puts Captures here
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        if spark is not None:
            self.namespace.update(spark=spark, sc=spark.sparkContext)

    def run(self, stmt: Statement) -> dict[str, Any]:
        filename = statement_filename(stmt.id)
        lines = stmt.code.splitlines(keepends=True)
        linecache.cache[filename] = (len(stmt.code), None, lines, filename)
        magic = None
        try:
            tree = ast.parse(stmt.code, filename)
        except SyntaxError as exc:
            last = stmt.code.rstrip().rsplit("\n", 1)
            if not last[-1].startswith("%"):
                return error_output(exc)
            magic = last[-1]
            try:
                tree = ast.parse(last[0] if len(last) > 1 else "", filename)
            except SyntaxError as inner:
                return error_output(inner)
        final = None
        if magic is None and tree.body and isinstance(tree.body[-1], ast.Expr):
            final = ast.Expression(tree.body.pop().value)
        sys.stdout, sys.stderr = self.streams  # again: an earlier statement may have replaced them
        self.sink.start(self.settings.max_output)
        data: dict[str, Any] = {}
        try:
            stmt.run_user_code(self._run_code, tree, final, filename)
            if magic is not None:
                data = stmt.run_user_code(self._run_magic, magic, filename)
        except BaseException as exc:  # user code failed (or was cancelled): Livy's error output
            self.sink.stop()
            return error_output(exc, exc.__traceback__)
        text = self.sink.stop().rstrip()  # past the limit: cap_output cuts and marks it
        if text or not data:
            data = {"text/plain": text, **data}
        return {"status": "ok", "data": data}

    def _run_code(self, tree: ast.Module, final: ast.Expression | None, filename: str) -> None:
        if tree.body:
            exec(compile(tree, filename, "exec"), self.namespace)  # noqa: S102 - running user code is the job
        if final is not None:
            value = eval(compile(final, filename, "eval"), self.namespace)  # noqa: S307 - as above
            if value is not None:
                self.namespace["_"] = value
                self.streams[0].write(repr(value) + "\n")

    def _run_magic(self, line: str, filename: str) -> dict[str, Any]:
        name, _, expression = line[1:].strip().partition(" ")
        if name not in MAGICS:
            raise ValueError(f"unknown magic command '%{name}': use %table, %json or %matplot")
        if not expression.strip():
            raise ValueError(f"%{name} needs a variable, e.g. %{name} x")
        if name == "matplot" and importlib.util.find_spec("matplotlib") is None:
            raise ModuleNotFoundError("%matplot needs matplotlib, which is not installed in the driver's Python")
        value = eval(compile(expression.strip(), filename, "eval"), self.namespace)  # noqa: S307 - user code
        if name == "table":
            return table_output(value, self.settings.sql_rows)
        if name == "json":
            return {"application/json": json_value(value, strict=True)}
        return matplot_output(value)

    def complete(self, code: str, cursor: int) -> list[str]:
        """Python names and attributes that complete the word before the cursor (rlcompleter)."""
        head = code[:cursor]
        start = len(head)
        while start > 0 and (head[start - 1].isalnum() or head[start - 1] in "._"):
            start -= 1
        word = head[start:]
        if not word:
            return []
        completer = rlcompleter.Completer(dict(self.namespace))
        candidates: list[str] = []
        for state in range(1000):
            try:
                match = completer.complete(word, state)
            except Exception:  # an attribute whose lookup raises: stop there
                break
            if match is None:
                break
            if match not in candidates:
                candidates.append(match)
        return candidates
