"""Benchmark 8: the /ui overview with 10,000 held batches, against the JSON list of the same page.

A filesystem store is filled with 10,000 finished batches (finished a minute ago, state-retain one
day, max-sessions 10,000: the banner warns), the server recovers them, then one keep-alive client
asks, in alternating rounds, for the overview's first page, a state-filtered page, the last page,
GET /batches?size=50 (the API's page of the same size, the anchor) and GET /version (the floor: what
any answer costs on the host at that moment). Latencies are per request, client side, over loopback.

Part of `python -m bench.run`; alone: .venv/bin/python -m bench.bench_ui [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.bench_recovery import fill_filesystem, record
from bench.common import Row, livy_server, say

HELD = 10_000
TARGET_P99_MS = 50.0
PAGE = 50


def make_records(total: int) -> list[dict]:
    now = time.time()
    states = ("success", "success", "success", "dead", "killed")
    records = []
    for batch_id in range(total):
        rec = record(batch_id, states[batch_id % len(states)], now - 300 + batch_id * 0.01, now - 60 + batch_id * 0.001)
        rec["name"] = f"bench-{batch_id}"
        records.append(rec)
    return records


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(work_dir: Path, quick: bool) -> list[Row]:
    rounds, per_round = (3, 100) if quick else (5, 400)
    store = work_dir / "store"
    work_dir.mkdir(parents=True, exist_ok=True)
    say(f"ui: filling a filesystem store with {HELD:,} finished batches")
    fill_filesystem(store, make_records(HELD))
    settings = {
        "livy.server.recovery.mode": "recovery",
        "livy.server.recovery.state-store": "filesystem",
        "livy.server.recovery.state-store.url": str(store),
        "livy.server.session.state-retain.sec": "1d",
        "livy.server.session.max-sessions": str(HELD),
    }
    urls = {
        "overview, first page": f"/ui?size={PAGE}",
        "overview, state filter (dead)": f"/ui?state=dead&size={PAGE}",
        "overview, last page": f"/ui?from={HELD - PAGE}&size={PAGE}",
        "anchor: GET /batches?size=50 (JSON)": f"/batches?size={PAGE}",
        "floor: GET /version": "/version",
    }
    timings: dict[str, list[float]] = {name: [] for name in urls}
    with livy_server(work_dir / "server", settings) as server:
        held = server.get("/batches", params={"size": 0}).json()["total"]
        if held != HELD:
            raise RuntimeError(f"the server recovered {held} batches, not {HELD}")
        session = requests.Session()
        first = session.get(server.url + urls["overview, first page"], timeout=30)
        if first.status_code != 200 or f"bench-{HELD - 1}" not in first.text or "max-sessions" not in first.text:
            raise RuntimeError(f"the overview does not show the held batches: {first.status_code} {first.text[:300]}")
        for url in urls.values():  # warm-up
            for _ in range(20):
                session.get(server.url + url, timeout=30).raise_for_status()
        say(f"ui: {rounds} rounds of {per_round} requests per page, pages alternating")
        for number in range(1, rounds + 1):
            for name, url in urls.items():
                for _ in range(per_round):
                    start = time.perf_counter()
                    response = session.get(server.url + url, timeout=30)
                    timings[name].append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
            p99s = ", ".join(f"{percentile(t, 0.99):.1f}" for t in timings.values())
            say(f"ui round {number}/{rounds}: p99 so far (ms), in the order {list(urls)}: {p99s}")
        size_kb = len(first.content) / 1024
    bench = "8. ui"
    rows = []
    overview_p99 = []
    for name, values in timings.items():
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        is_anchor = name.startswith(("anchor", "floor"))
        if not is_anchor:
            overview_p99.append(p99)
        rows.append(
            Row(
                bench,
                f"{name}: p50 / p99 at {HELD:,} held",
                f"{p50:.1f} ms / {p99:.1f} ms (n={len(values)})",
                target="" if is_anchor else f"p99 <= {TARGET_P99_MS:g} ms",
                anchor="" if is_anchor else "the API's page of the same size, and /version (the HTTP floor), same run",
                met=None if is_anchor else p99 <= TARGET_P99_MS,
            )
        )
    rows.append(Row(bench, "overview page size", f"{size_kb:.0f} KiB of HTML for {PAGE} rows"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_ui", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="livy-bench-ui-") as tmp:
        for found in run(Path(tmp), args.quick):
            verdict = "" if found.met is None else ("met" if found.met else "MISSED")
            print(f"{found.figure}: {found.value} {found.target} {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
