"""The REPL package (server/repl/livy_repl) as it ships: self-contained, one zip, and in step with protocol.py.

The REPL runs inside the Spark driver, where airflow_provider_livy is not installed, so it cannot import
protocol.py: these tests hold its imports to the standard library, pyspark and its own modules, run the zip
with nothing else importable, and compare its kinds and statement states with protocol.py's.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_livy import protocol
from airflow_provider_livy.server.repl import PACKAGE_DIR, driver_file
from airflow_provider_livy.server.repl.livy_repl import kinds, statement

ALLOWED_THIRD_PARTY = {"pyspark", "py4j"}  # what a Spark driver's Python has


def test_the_repl_imports_only_the_standard_library_pyspark_and_itself() -> None:
    modules = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(modules) > 10
    found = []
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name.split(".")[0], 0) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((path.name, (node.module or "").split(".")[0], node.level))
    outside = [
        (module, name, level)
        for module, name, level in found
        if level > 1 or (level == 0 and name not in sys.stdlib_module_names and name not in ALLOWED_THIRD_PARTY)
    ]
    assert not outside, f"imports the REPL cannot make inside a Spark driver: {outside}"
    assert any(level == 1 for _, _, level in found)  # the check above saw the package's own imports too


def test_kinds_and_statement_states_match_protocol() -> None:
    assert kinds.SHARED == protocol.SHARED
    assert set(kinds.KINDS.values()) == set(protocol.STATEMENT_KINDS)
    assert {*kinds.KINDS.values(), kinds.SHARED} == set(protocol.KNOWN_KINDS)
    assert set(kinds.KINDS) == {*protocol.STATEMENT_KINDS, *protocol.KIND_ALIASES}
    assert all(kinds.KINDS[alias] == name for alias, name in protocol.KIND_ALIASES.items())
    assert all(kinds.KINDS[name] == name for name in protocol.STATEMENT_KINDS)
    states = (statement.WAITING, statement.RUNNING, statement.AVAILABLE, statement.CANCELLING, statement.CANCELLED)
    assert states == protocol.STATEMENT_STATES
    assert set(statement.FINAL_STATES) == protocol.STATEMENT_DONE_STATES


def test_driver_file_is_the_package_as_one_zip() -> None:
    path = driver_file()
    assert path.name == "driver.py" and driver_file() == path  # spark-submit runs only a .py main file as Python
    assert path.parent.stat().st_mode & 0o077 == 0  # private to the server's user
    modules = sorted(PACKAGE_DIR.glob("*.py"))
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        assert names == {"__main__.py", *(f"livy_repl/{m.name}" for m in modules), *(f"livy_repl/{m.name}c" for m in modules)}
        assert all(archive.read(f"livy_repl/{m.name}") == m.read_bytes() for m in modules)
        assert all(archive.read(f"livy_repl/{m.name}c")[:4] == importlib.util.MAGIC_NUMBER for m in modules)
    path.unlink()  # a temp-dir cleaner took it: the next launch writes it again, the same
    assert driver_file() == path and path.is_file()


def foreign_bytecode(source: Path, target: Path) -> Path:
    """The zip as a driver on another Python version meets it: every .pyc with a magic number not its own."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            copy.writestr(info, b"\0\0\r\n" + data[4:] if info.filename.endswith(".pyc") else data)
    return target


@pytest.mark.parametrize("bytecode", ["this Python's", "another Python's"])
def test_the_zip_runs_with_nothing_but_the_standard_library(tmp_path: Path, bytecode: str) -> None:
    """The file alone, copied elsewhere as a cluster node receives it, run without site-packages: from its
    bytecode, or from its sources where the bytecode is another Python's; its own frames stay out of tracebacks."""
    alone = tmp_path / "driver.py"
    if bytecode == "this Python's":
        alone.write_bytes(driver_file().read_bytes())
    else:
        foreign_bytecode(driver_file(), alone)
    env = {"PATH": os.environ["PATH"], "LIVY_REPL_SECRET": "s3cret", "LIVY_REPL_NO_SPARK": "1", "LIVY_REPL_IDLE_TIMEOUT": "60"}
    command = [sys.executable, "-I", "-S", "driver.py"]  # -I: no PYTHONPATH, no cwd; -S: no site-packages
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        address = re.search(r"listening on (http://\S+)", first)
        assert address, first + proc.stdout.read() if proc.poll() is not None else first
        headers = {"Authorization": "Bearer s3cret"}

        def run(code: str) -> dict[str, Any]:
            made = requests.post(f"{address[1]}/statements", json={"code": code}, headers=headers, timeout=10).json()
            done = requests.get(f"{address[1]}/statements/{made['id']}?wait=10", headers=headers, timeout=20).json()
            assert done["state"] == "available", done
            return done["output"]

        assert run("import sys; 6 * 7")["data"]["text/plain"] == "42"
        error = run("def f():\n    return 1 / 0\nf()")
        assert error["ename"] == "ZeroDivisionError" and len(error["traceback"]) == 4, error
        assert not any("livy_repl" in line or "driver.py" in line for line in error["traceback"])
        requests.post(f"{address[1]}/shutdown", headers=headers, timeout=10)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()
