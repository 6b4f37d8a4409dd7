"""Run every benchmark and rewrite the results table in bench/README.md.

Usage: .venv/bin/python -m bench.run [--quick] [--only NAME ...] [--no-write]
A benchmark whose parts are missing from the install reports "not available" instead of failing the run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import REPO, NotAvailable, Row, machine, say

README = REPO / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
# name -> module; each module has run(work_dir, quick) -> list[Row]
BENCHMARKS = {
    "polling": "bench.bench_polling",
    "memory": "bench.bench_memory",
    "collection": "bench.bench_collection",
    "recovery": "bench.bench_recovery",
    "sweep": "bench.bench_sweep",
    "e2e": "bench.bench_e2e",
    "repl": "bench.bench_repl",
    "ui": "bench.bench_ui",
    "cluster": "bench.bench_cluster",
    "scala": "bench.bench_scala",
    "sessions": "bench.bench_sessions",
    "ha": "bench.bench_ha",
    "store_acl": "bench.bench_store_acl",
    "signin": "bench.bench_signin",
}


def run_one(name: str, work_dir: Path, quick: bool) -> tuple[list[Row], float]:
    start = time.monotonic()
    say(f"=== {name} ===")
    try:
        module = importlib.import_module(BENCHMARKS[name])
        rows = module.run(work_dir / name, quick)
    except (NotAvailable, ModuleNotFoundError) as err:
        say(f"{name}: not available: {err}")
        rows = [Row(name, "-", "not available", note=str(err))]
    except Exception as err:
        traceback.print_exc()
        rows = [Row(name, "-", "failed", note=f"{type(err).__name__}: {err}"[:300], met=False)]
    elapsed = time.monotonic() - start
    say(f"{name} took {elapsed:.0f}s")
    return rows, elapsed


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row], quick: bool, timings: dict[str, float]) -> str:
    info = machine()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick (`--quick`)" if quick else "full"
    lines = [
        f"Run: {when}, {mode} mode, {sum(timings.values()):.0f} s "
        f"({', '.join(f'{name} {seconds:.0f} s' for name, seconds in timings.items())}).",
        "",
        f"Machine: {info['cores']} cores, {info['memory']}, {info['cpu']}; {info['os']}; Python {info['python']}; "
        f"{info['java']}; {info['wrk']}; load average at the end {info['load']}.",
        "",
        "| benchmark | figure | measured | target | anchor | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        value = row.value + (f" ({row.note})" if row.note else "")
        lines.append(
            f"| {row.bench} | {_cell(row.figure)} | {_cell(value)} | {_cell(row.target)} | {_cell(row.anchor)} | {met} |"
        )
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = README.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"{README} has no {START} ... {END} block to rewrite")
    README.write_text(pattern.sub(lambda _m: f"{START}\n{text}\n{END}", readme))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller loads and fewer rounds: under 3 minutes")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave bench/README.md alone")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server and driver logs) for a look")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    tmp = tempfile.mkdtemp(prefix="livy-bench-")
    say(f"work directory {tmp}" + (" (kept)" if args.keep else ""))
    try:
        for name in names:
            found, timings[name] = run_one(name, Path(tmp), args.quick)
            rows += found
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    text = table(rows, args.quick, timings)
    print(text)
    if not args.no_write:
        write_readme(text)
        say(f"wrote the results table into {README.relative_to(REPO)}")
    return 1 if any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
