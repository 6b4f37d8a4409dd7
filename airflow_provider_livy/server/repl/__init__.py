"""The REPL of interactive sessions: the `livy_repl` package runs inside the Spark driver; this module
gives spark-submit that package as its one main file.

spark-submit takes one main Python file, and in cluster deploy mode that file is all of ours that
reaches the driver's node (YARN localizes it, Kubernetes uploads it), where our package is not
installed. So the package ships as a zip that Python runs as a script (its `__main__.py`; Python
tells a zip by its content), named driver.py because spark-submit takes only a `.py` main file for
Python. It holds each module's source and its bytecode for the server's Python (a driver on another
Python compiles the sources instead). The zip is made once per server process from the installed
package and written, named by its content's hash, into a directory private to this user under the
temp dir; a missing file (a temp-dir cleaner) is written again, and a file a running driver was
started from is never rewritten. The server itself imports only `livy_repl.r_setup`, to check R and
SparkR on its host before a sparkr session starts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import marshal
import os
import stat
import tempfile
import zipfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent / "livy_repl"
ARCHIVE_MAIN = "from livy_repl.main import main\n\nmain()\n"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
DRIVER_NAME = "driver.py"


@functools.cache
def _archive() -> tuple[bytes, str]:
    """The zip of the package (its modules and a `__main__.py` that starts the driver), and its hash."""
    buffer = io.BytesIO()
    members = [("__main__.py", ARCHIVE_MAIN.encode())]
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        name = f"{PACKAGE_DIR.name}/{path.name}"
        source = path.read_bytes()
        members += [(name, source), (name + "c", _bytecode(source, f"{DRIVER_NAME}/{name}"))]
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:  # a fixed date: the same sources make the same bytes, so the same name
            archive.writestr(zipfile.ZipInfo(name, ZIP_DATE), content, zipfile.ZIP_DEFLATED)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:16]


def _bytecode(source: bytes, name: str) -> bytes:
    """The module compiled by this Python, as zipimport reads it next to its source (PEP 552's unchecked
    hash-based .pyc: the zip's content never changes): a driver on this Python (local and client mode)
    skips compiling it at each start; another Python version sees a foreign magic number and compiles
    the source instead."""
    code = compile(source, name, "exec", dont_inherit=True)
    unchecked_hash_based = (0b01).to_bytes(4, "little")
    return importlib.util.MAGIC_NUMBER + unchecked_hash_based + importlib.util.source_hash(source) + marshal.dumps(code)


def _private_dir() -> Path:
    """<temp dir>/livy-repl-<uid> when it is this user's alone; else a new private directory."""
    path = Path(tempfile.gettempdir()) / f"livy-repl-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
        return path
    return Path(tempfile.mkdtemp(prefix="livy-repl-"))


def driver_file() -> Path:
    """The REPL as spark-submit's main file, written if it is not there yet."""
    data, digest = _archive()
    target = _private_dir() / digest / DRIVER_NAME
    if not target.is_file():
        target.parent.mkdir(mode=0o700, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".driver-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(partial, target)  # whole or not at all, whoever else writes it at the same time
    return target
