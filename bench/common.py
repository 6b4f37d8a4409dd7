"""What every benchmark shares: progress lines, result rows, medians, processes on free ports.

Servers are started with the tests' own helpers (tests/conftest.py), so a benchmark measures
exactly the server the tests check.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import requests

from tests.conftest import FAKE_SPARK_HOME, LivyServer, free_port, start_server

__all__ = ["FAKE_SPARK_HOME", "LivyServer", "free_port", "start_server"]

REPO = Path(__file__).resolve().parent.parent
_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress for long runs, on stderr so output stays clean."""
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class NotAvailable(Exception):
    """A benchmark whose subject is missing from the install: reported as such, not as a failure."""


@dataclasses.dataclass
class Row:
    """One figure of the results table."""

    bench: str
    figure: str
    value: str
    target: str = ""
    anchor: str = ""
    met: bool | None = None  # None: no target, or not measured
    note: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """'median (min-max, n=N)' for a table cell."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))}, n={len(values)})"


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    """Seconds until check() held; raises TimeoutError after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"still not true after {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - start


def wait_http(url: str, timeout: float = 30) -> None:
    def answers() -> bool:
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    wait_until(answers, timeout, 0.05)


@contextmanager
def process(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, stopped with SIGTERM (then SIGKILL) when the block ends."""
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def livy_server(
    work_dir: Path,
    settings: dict[str, str],
    fake_spark: bool = True,
    timeout: float = 120,
    spark_home: Path = FAKE_SPARK_HOME,
) -> Iterator[LivyServer]:
    """Our server as its own process, as `livy-server` runs it, stopped at the end."""
    work_dir.mkdir(parents=True, exist_ok=True)
    merged = {"livy.server.spark-home": str(spark_home)} if fake_spark else {}
    merged.update(settings)
    server = start_server(work_dir, merged, timeout=timeout)
    profiler = start_profiler(server.proc.pid, work_dir.name)
    try:
        yield server
    finally:
        server.stop(timeout=180)  # a server with 1,000 sessions needs more than 30 s to kill them all
        if profiler is not None:
            profiler.wait(30)


def start_profiler(pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """With BENCH_PROFILE=DIR, py-spy samples the process until it exits: DIR/NAME-PID.txt (collapsed stacks)."""
    out_dir = os.environ.get("BENCH_PROFILE")
    if not out_dir:
        return None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out = Path(out_dir) / f"{name}-{pid}.txt"
    say(f"profiling pid {pid} with py-spy into {out}")
    py_spy = Path(sys.executable).parent / "py-spy"
    args = [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        java = "not found"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout if _has("wrk") else ""
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": java,
        "wrk": (re.findall(r"wrk \S+", wrk) or ["wrk not found"])[0],
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


def _has(command: str) -> bool:
    return any((Path(d) / command).is_file() for d in os.environ.get("PATH", "").split(os.pathsep))


def run_alone(
    doc: str,
    prefix: str,
    run: Callable[[Path, bool], list[Row]],
    side_by_side: Callable[[Path, Path, bool], None],
    show: Callable[[Row], str],
) -> None:
    """A benchmark run alone: its rows printed, or with --before DIR (a checkout of an older revision)
    that code and this one measured side by side in the same run. --quick: fewer rounds."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--before", type=Path, help="a checkout of an older revision: measure it and this one side by side")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if arguments.before:
        side_by_side(arguments.before, work, arguments.quick)
    else:
        for row in run(work, arguments.quick):
            print(show(row))
