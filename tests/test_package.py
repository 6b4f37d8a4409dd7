"""The provider as a user installs it: the sdist and wheel built from this checkout, the wheel installed into a
fresh virtualenv, and there the provider registered, the two-line DAG files loaded, `livy-server` run.

The fresh virtualenv borrows the test environment's installed dependencies (a .pth file naming a directory of
links to them) and the wheel goes in with `--no-deps --no-index`, so nothing is downloaded. pyspark is left
out of the borrowed set on purpose: that virtualenv is a scheduler or worker without the `spark` extra, so
everything but the server's Spark must work there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from airflow_provider_livy import __version__
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
DIST_NAME = "airflow-provider-livy"
NOT_BORROWED = ("pyspark", "airflow_provider_livy", "__editable__")  # nor any .pth: the editable install's finder

# Runs inside the fresh virtualenv; prints one JSON line.
PROBE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import airflow_provider_livy
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    from airflow_provider_livy.example_jobs import PI_JOB

    manager = ProvidersManager()
    provider = manager.providers.get("airflow-provider-livy")
    form = {m.connection_type: m.hook_class_name for m in manager.iter_connection_type_hook_ui_metadata()}
    hook = ProvidersManagerTaskRuntime().hooks.get("livy_batch")  # what a worker's BaseHook.get_hook uses: imports it
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({
        "package_file": airflow_provider_livy.__file__,
        "provider_version": provider.version if provider else None,
        "form_hook_class": form.get("livy_batch"),
        "hook_class": hook.hook_class_name if hook else None,
        "import_errors": bag.import_errors,
        "dags": {dag_id: {"fileloc": dag.fileloc, "tasks": sorted(dag.task_ids)} for dag_id, dag in bag.dags.items()},
        "pi_job": str(PI_JOB) if PI_JOB.is_file() else None,
        "pyspark_importable": importlib.util.find_spec("pyspark") is not None,
        "pyspark_imported": "pyspark" in sys.modules,
    }))
    """
)


def run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def source_files() -> list[str]:
    """The checkout as a fresh clone would have it (tracked files plus new ones not ignored, as edited now)."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO).stdout
    return sorted(name for name in set(listed.split("\0")) if name and (REPO / name).is_file())


@dataclass
class Built:
    sdist: Path
    wheel: Path
    sources: list[str]


@dataclass
class Installed:
    venv: Path
    home: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "PYTHONPATH": "",
        }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist, then the wheel from that sdist (python -m build's default), from a copy of the checkout."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to know which files are the source")
    work = tmp_path_factory.mktemp("build")
    sources = source_files()
    for name in sources:
        (work / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, work / "src" / name)
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", work / "dist", work / "src"])
    (sdist,) = (work / "dist").glob("*.tar.gz")
    (wheel,) = (work / "dist").glob("*.whl")
    return Built(sdist, wheel, sources)


@pytest.fixture(scope="module")
def installed(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A new virtualenv with the wheel, borrowing the test environment's dependencies but pyspark."""
    work = tmp_path_factory.mktemp("installed")
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    borrowed = work / "borrowed-site-packages"
    borrowed.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(NOT_BORROWED) and entry.suffix != ".pth":
            (borrowed / entry.name).symlink_to(entry)
    site = Path(run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "borrowed.pth").write_text(f"{borrowed}\n")
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", built.wheel])
    home = work / "airflow-home"
    (home / "dags").mkdir(parents=True)
    return Installed(venv, home)


def test_sdist_and_wheel_carry_everything(built: Built) -> None:
    assert built.wheel.name == f"airflow_provider_livy-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        in_wheel = set(wheel.namelist())
        entry_points = wheel.read(f"airflow_provider_livy-{__version__}.dist-info/entry_points.txt").decode()
        metadata = wheel.read(f"airflow_provider_livy-{__version__}.dist-info/METADATA").decode()
    package_files = {name for name in built.sources if name.startswith("airflow_provider_livy/")}
    assert package_files - in_wheel == set(), "files of the package missing from the wheel"
    assert "livy-server = airflow_provider_livy.server.cli:main" in entry_points
    assert "provider_info = airflow_provider_livy.provider_info:get_provider_info" in entry_points
    assert "Provides-Extra: spark" in metadata
    assert not any(line.startswith("Requires-Dist: pyspark") and "extra ==" not in line for line in metadata.splitlines())
    with tarfile.open(built.sdist) as sdist:
        top = f"airflow_provider_livy-{__version__}/"
        in_sdist = {name.removeprefix(top) for name in sdist.getnames()}
    expected = package_files | {"dags/livy_maintenance.py", "dags/example_livy_batch.py", "CHANGELOG.md", "README.md"}
    assert expected - in_sdist == set(), "files missing from the sdist"


def test_installed_wheel_registers_the_provider_and_loads_the_two_line_dags(installed: Installed) -> None:
    for name in ("livy_maintenance.py", "example_livy_batch.py"):
        shutil.copy(REPO / "dags" / name, installed.home / "dags" / name)
        assert len((REPO / "dags" / name).read_text().strip().splitlines()) <= 3, f"dags/{name} is no longer the short file"
    probe = run([installed.python, "-c", PROBE, installed.home / "dags"], env=installed.env, cwd=installed.home)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(found["package_file"]).is_relative_to(installed.venv), "imported the checkout, not the wheel"
    assert found["provider_version"] == __version__
    assert found["form_hook_class"] == found["hook_class"] == "airflow_provider_livy.hooks.livy.LivyHook"
    assert found["import_errors"] == {}
    assert found["dags"] == {
        "livy_maintenance": {
            "fileloc": str(installed.home / "dags" / "livy_maintenance.py"),
            "tasks": ["check", "rest_sweep", "zookeeper_sweep"],
        },
        "example_livy_batch": {"fileloc": str(installed.home / "dags" / "example_livy_batch.py"), "tasks": ["estimate_pi"]},
    }
    assert found["pi_job"] is not None and Path(found["pi_job"]).is_relative_to(installed.venv)
    # A scheduler or worker without the spark extra: no pyspark to import, and nothing above needed it.
    assert found["pyspark_importable"] is False
    assert found["pyspark_imported"] is False


def test_installed_wheel_in_airflow_providers_list(installed: Installed) -> None:
    listed = run([installed.python, "-m", "airflow", "providers", "list", "-o", "json"], env=installed.env, cwd=installed.home)
    providers = {p["package_name"]: p["version"] for p in json.loads(listed.stdout[listed.stdout.index("[") :])}
    assert providers[DIST_NAME] == __version__


def test_installed_livy_server_command(installed: Installed) -> None:
    helped = run([installed.venv / "bin" / "livy-server", "--help"], env=installed.env)
    assert "--conf" in helped.stdout and "--set" in helped.stdout
    assert run([installed.venv / "bin" / "livy-server", "--version"], env=installed.env).stdout.strip() == __version__
    # Without the spark extra and without a Spark to point at, the server says what to do and exits 2.
    env = {key: value for key, value in installed.env.items() if key != "SPARK_HOME"}
    command = [installed.venv / "bin" / "livy-server", "--set", f"livy.server.port={free_port()}"]
    started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 2, started.stderr
    assert "install the spark extra" in started.stderr and "Traceback" not in started.stderr
