"""Benchmark 10: a Scala session's start and first statement, against spark-shell doing the same.

Both sides run `val x = 40 + 2` then `spark.range(10).count()` on a fresh `--master local[1]`
driver, in alternating rounds of one run:
- spark-shell: pyspark's `bin/spark-shell` with the two lines piped to its stdin; timed from spawn
  to the line that prints the count (`res...: Long = 10`). Its JVM starts Spark and the Scala REPL.
- ours: a `spark` session through our server (already running): timed from `POST /sessions` to
  the session's `idle` (polled every 0.1 s), then to the count statement's `available` answer. Its
  driver (server/repl/livy_repl under spark-submit) starts Spark from Python, then the Scala REPL
  through Py4J in the background.
The difference (ours - spark-shell) is our share of a Scala session's first answer; target <= 1 s.

Run alone: .venv/bin/python -m bench.bench_scala [--quick]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from airflow_provider_livy.server.config import ServerConfig
from airflow_provider_livy.server.drivers.launcher import resolve_spark_home
from bench.common import Row, median, say
from tests.conftest import LivyServer, kill_drivers, start_server

CODE = ["val x = 40 + 2", "spark.range(10).count()"]


def spark_shell_round(work_dir: Path) -> float:
    """Seconds from spawning spark-shell to the printed count."""
    shell = resolve_spark_home(ServerConfig()) / "bin" / "spark-shell"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(shell), "--master", "local[1]", "--conf", "spark.ui.enabled=false"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=work_dir,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("\n".join([*CODE, ":quit"]) + "\n")  # spark-shell reads a piped stdin to its end
    proc.stdin.close()
    elapsed = None
    for line in proc.stdout:
        if ": Long = 10" in line:
            elapsed = time.monotonic() - started
    proc.wait(60)
    if elapsed is None:
        raise AssertionError("spark-shell never printed the count")
    return elapsed


def ours_round(server: LivyServer) -> tuple[float, float]:
    """Seconds from POST /sessions (kind spark) to `idle`, and to the count statement's answer."""
    started = time.monotonic()
    response = server.post("/sessions", json={"kind": "spark", "conf": {"spark.ui.enabled": "false"}})
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    try:
        server.wait_for(sid, {"idle"}, path="/sessions", timeout=600)
        ready = time.monotonic() - started
        for code in CODE:
            statement = server.run(sid, code, timeout=600)
            assert statement["output"]["status"] == "ok", statement
        assert statement["output"]["data"]["text/plain"].endswith(": Long = 10"), statement
        return ready, time.monotonic() - started
    finally:
        server.delete(f"/sessions/{sid}")


def run(work_dir: Path, quick: bool) -> list[Row]:
    work_dir.mkdir(parents=True, exist_ok=True)
    rounds = 1 if quick else 3
    shell, ready, first = [], [], []
    server = start_server(work_dir, {"livy.spark.master": "local[1]"})
    try:
        for index in range(rounds):
            say(f"scala: round {index + 1}/{rounds}: spark-shell")
            shell.append(spark_shell_round(work_dir))
            say(f"scala: round {index + 1}/{rounds}: a spark session through our server")
            up, answer = ours_round(server)
            ready.append(up)
            first.append(answer)
            say(f"scala: spark-shell {shell[-1]:.1f} s; ours idle {up:.1f} s, first answer {answer:.1f} s")
    finally:
        server.stop()
        kill_drivers(work_dir)
    share = [ours - theirs for ours, theirs in zip(first, shell, strict=True)]
    n = f"n={rounds}"
    return [
        Row("10. scala", f"spark-shell: spawn -> count printed ({n})", f"{median(shell):.1f} s", anchor="local[1], same run"),
        Row("10. scala", f"ours: POST /sessions -> idle ({n})", f"{median(ready):.1f} s"),
        Row("10. scala", f"ours: POST /sessions -> count statement available ({n})", f"{median(first):.1f} s"),
        Row(
            "10. scala",
            "our share: ours - spark-shell, per alternating round (median)",
            f"{median(share):+.1f} s ({', '.join(f'{value:+.1f}' for value in share)})",
            target="<= 1 s",
            anchor="spark-shell, same run",
            met=median(share) <= 1.0,
        ),
    ]


if __name__ == "__main__":
    for row in run(Path(tempfile.mkdtemp(prefix="bench-scala-")), sys.argv[1:] == ["--quick"]):
        print(f"{row.figure}: {row.value} {row.note}")
