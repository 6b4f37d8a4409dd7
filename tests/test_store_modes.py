"""The filesystem store keeps its records to the server's user: directories 0700, files 0600, whatever the umask."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import LivyServer
from tests.state_store import FileStoreView

ROOT = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"  # the test's own interpreter may sit where the other user cannot reach it


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


def test_a_server_started_under_umask_000_keeps_its_store_private(
    make_server: Callable[..., LivyServer], tmp_path: Path, job_file: str
) -> None:
    store = FileStoreView(tmp_path / "state-store")
    loose = store.root / "v1" / "batch"
    loose.mkdir(parents=True, mode=0o755)
    loose.chmod(0o777)  # as an older version left it under a permissive umask
    previous = os.umask(0)
    try:
        server = make_server(store.settings)  # the server inherits umask 000
    finally:
        os.umask(previous)
    assert f"state store directory {loose} was mode 777; now 0700" in server.server_log()
    session = server.open_session(kind="pyspark")
    batch = server.wait_for(server.submit(file=job_file, args=["exit=0"])["id"])
    assert store.records("interactive")[session["id"]]["replSecret"] and batch["id"] in store.records()
    found = modes(store.root)
    assert {"v1/batch/0", "v1/batch/state", "v1/interactive/0", "v1/interactive/state"} <= set(found)
    assert len([name for name in found if "-index/" in name]) == 2, found
    for name, mode in found.items():
        expected = 0o700 if (store.root / name).is_dir() else 0o600
        assert mode == expected, f"{name} is {mode:o}, not {expected:o}"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another local user (nobody) can reach: pytest's own temp dirs are the test user's alone."""
    if os.geteuid() != 0 or not Path(SYSTEM_PYTHON).exists():
        pytest.skip("needs root to act as another user, and a Python that user may run")
    path = Path(tempfile.mkdtemp(prefix="livy-modes-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_directory_that_cannot_be_tightened_is_named_in_a_warning(shared_dir: Path) -> None:
    """The store's root belongs to another user (here root) and is 0777: the server (nobody) cannot chmod it."""
    root = shared_dir / "store"
    root.mkdir()
    root.chmod(0o777)
    code = (
        "import logging, sys; logging.basicConfig(); "
        "from airflow_provider_livy.server.stores.filesystem import FileSystemStore; FileSystemStore(sys.argv[1]).close()"
    )
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", code, str(root)],
        user="nobody",
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=shared_dir,
    )
    assert done.returncode == 0, done.stderr
    assert f"state store directory {root} is mode 777 and cannot be made 0700 (Operation not permitted)" in done.stderr
    assert modes(root)["v1"] == 0o700 and modes(root)["v1/batch"] == 0o700, "what it created is private"
