"""Benchmark 1: the polling call, GET /batches/{id}/state, against the HTTP floor.

64 keep-alive clients (wrk) hammer our server's state route and, in the same run, a bare Starlette
route returning the same JSON under the same uvicorn settings (bench/floor_app.py). Rounds
alternate floor, ours, floor, ours..., so both see the same machine load; the figure is the
median of the per-round ratios.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.common import Row, free_port, livy_server, median, process, say, spread, wait_http

CONNECTIONS = 64
TARGET_RATIO = 0.7
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50 and p99 in ms, and the count of non-2xx answers, from `wrk --latency` output."""

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            raise ValueError(f"no {percent}% latency in wrk output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rps:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return {
        "rps": float(rps.group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "errors": float(errors.group(1) if errors else 0),
    }


def wrk(url: str, seconds: int, threads: int, headers: list[str] | None = None) -> dict[str, float]:
    """`headers`: "Name: value" lines sent with every request (credentials, a cookie)."""
    command = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for header in headers or ():
        command += ["-H", header]
    command.append(url)
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    figures = parse_wrk(result.stdout)
    if figures["errors"]:
        raise RuntimeError(f"{url} answered {figures['errors']:.0f} requests with an error status")
    return figures


def run(work_dir: Path, quick: bool) -> list[Row]:
    rounds, seconds, threads = (3, 3, 2) if quick else (5, 10, 2)
    work_dir.mkdir(parents=True, exist_ok=True)
    job = work_dir / "job.py"
    job.write_text("print('fake job')\n")
    floor_port = free_port()
    with (
        livy_server(work_dir / "server", {"livy.file.local-dir-whitelist": str(work_dir)}) as server,
        process([sys.executable, "-m", "bench.floor_app", str(floor_port)], work_dir / "floor.log"),
    ):
        batch = server.submit(file=str(job))
        view = server.wait_for(batch["id"])
        ours_url = f"{server.url}/batches/{batch['id']}/state"
        floor_url = f"http://127.0.0.1:{floor_port}/batches/{batch['id']}/state"
        wait_http(floor_url)
        ours_body, floor_body = server.session.get(ours_url).content, server.session.get(floor_url).content
        if ours_body != floor_body.replace(b"0", str(batch["id"]).encode(), 1) or view["state"] != "success":
            raise RuntimeError(f"the floor does not answer like our server: {floor_body!r} vs {ours_body!r}")
        say(f"polling: warm-up, then {rounds} rounds of {seconds}s per side, wrk -t{threads} -c{CONNECTIONS}")
        wrk(ours_url, 2, threads)
        wrk(floor_url, 2, threads)
        floor, ours = [], []
        for number in range(1, rounds + 1):
            floor.append(wrk(floor_url, seconds, threads))
            ours.append(wrk(ours_url, seconds, threads))
            say(
                f"polling round {number}/{rounds}: floor {floor[-1]['rps']:.0f} req/s, ours {ours[-1]['rps']:.0f} req/s "
                f"(ratio {ours[-1]['rps'] / floor[-1]['rps']:.2f})"
            )
    ratios = [o["rps"] / f["rps"] for o, f in zip(ours, floor, strict=True)]
    ratio = median(ratios)
    bench = "1. polling"
    anchor = "bare Starlette route, same JSON, same uvicorn settings, same run"
    return [
        Row(bench, "ours: requests/s", spread([o["rps"] for o in ours]), anchor=anchor),
        Row(bench, "floor: requests/s", spread([f["rps"] for f in floor]), anchor="the HTTP floor"),
        Row(
            bench,
            "throughput vs floor",
            f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f})",
            target=f">= {TARGET_RATIO}",
            anchor="ratio per round, median",
            met=ratio >= TARGET_RATIO,
        ),
        Row(
            bench, "ours: p50 / p99 latency", f"{_ms([o['p50'] for o in ours])} / {_ms([o['p99'] for o in ours])}", anchor=anchor
        ),
        Row(bench, "floor: p50 / p99 latency", f"{_ms([f['p50'] for f in floor])} / {_ms([f['p99'] for f in floor])}"),
    ]


def _ms(values: list[float]) -> str:
    return f"{median(values):.1f} ms"
