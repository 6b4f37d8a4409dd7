"""kill -9 of the server while 50 batches run, twice, with a restart after each, for both state stores.

The 50 fake batches are in every phase when the server dies: ended before the crash, running
and ending while the server is down, running on past the restarts, launched but not up yet,
and queued for a creation slot. Each must come back under its id and end in the state its driver's
exit code says, with its appId and a log holding exactly one run of its driver; the store must
agree. Run with `.venv/bin/python -m pytest tests/stress -s` (about a minute per store).
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.conftest import LivyServer
from tests.state_store import StoreView
from tests.test_recovery import log_lines, wait_until

# (how many, driver arguments): the phase each group is in when the server is killed
ENDED_BEFORE = 12  # sleep=0: ended before the crash
ENDS_WHILE_DOWN = 12  # sleep=4: its exit file appears while no server runs
RUNS_ON = 14  # sleep=14: re-attached by the restarts, ends under the last server
NOT_UP_YET = 8  # delay=6: launched, driver not up yet (holds all 8 creation slots)
QUEUED = 4  # submitted behind them: never launched before the crash
TOTAL = ENDED_BEFORE + ENDS_WHILE_DOWN + RUNS_ON + NOT_UP_YET + QUEUED


def exit_code(index: int) -> int:
    """Every third batch fails, with codes 1 to 7: success and dead both occur in every group."""
    return 0 if index % 3 else index % 7 + 1


def app_id(index: int) -> str:
    return f"app-20250101000000-{index:04d}"


def submit_group(server: LivyServer, job_file: str, start: int, count: int, timing: list[str]) -> list[int]:
    return [
        server.submit(file=job_file, args=[*timing, f"exit={exit_code(i)}", f"app={app_id(i)}", "lines=2"])["id"]
        for i in range(start, start + count)
    ]


def test_kill_9_twice_with_50_batches_in_every_phase(make_server, store: StoreView, job_file: str) -> None:
    settings = {**store.settings, "livy.server.session.max-creation": "8", "livy.server.session.state-retain.sec": "1h"}
    server = make_server(settings)
    ended = submit_group(server, job_file, 0, ENDED_BEFORE, ["sleep=0"])
    for batch_id in ended:
        server.wait_for(batch_id)
    down = submit_group(server, job_file, ENDED_BEFORE, ENDS_WHILE_DOWN, ["sleep=4"])
    runs_on = submit_group(server, job_file, ENDED_BEFORE + ENDS_WHILE_DOWN, RUNS_ON, ["sleep=14"])
    for batch_id in down:  # on a slow machine a few may end before the crash: then others stand for this phase
        server.wait_for(batch_id, {"running", "success", "dead"}, timeout=60)
    for batch_id in runs_on:
        server.wait_for(batch_id, {"running"}, timeout=60)
    first = ENDED_BEFORE + ENDS_WHILE_DOWN + RUNS_ON
    not_up = submit_group(server, job_file, first, NOT_UP_YET, ["delay=6", "sleep=0"])
    queued = submit_group(server, job_file, first + NOT_UP_YET, QUEUED, ["sleep=0"])
    ids = ended + down + runs_on + not_up + queued
    assert ids == list(range(TOTAL))
    states = [s["state"] for s in server.get("/batches", params={"size": 100}).json()["sessions"]]
    server.stop(signal.SIGKILL)
    faults = 1
    phases = {state: states.count(state) for state in sorted(set(states))}

    log_dir = Path(server.settings["livy.server.log-dir"])
    wait_until(lambda: all((log_dir / f"{i}.exit").exists() for i in down), timeout=30, what="drivers ending while down")
    restarted = make_server(settings)
    assert restarted.batch_ids() == ids, "every batch is back under its id, none twice"
    restarted.stop(signal.SIGKILL)  # again, while the restarted server re-attaches, relaunches and re-saves
    faults += 1

    final = make_server(settings)
    views = {}
    for index, batch_id in enumerate(ids):
        views[batch_id] = final.wait_for(batch_id, timeout=90)
        expected = "success" if exit_code(index) == 0 else "dead"
        assert views[batch_id]["state"] == expected, (index, views[batch_id])
        assert views[batch_id]["appId"] == app_id(index), views[batch_id]
        lines = log_lines(final, batch_id)
        assert lines.count(f"INFO SparkContext: Successfully stopped SparkContext (exit {exit_code(index)})") == 1, lines
        assert sum("Running Spark version" in line for line in lines) == 1, f"batch {batch_id} ran once: {lines}"
    assert final.batch_ids() == ids
    ended_while_down = sum(any("while the server was down" in line for line in log_lines(final, batch_id)) for batch_id in ids)
    new = final.submit(file=job_file)["id"]
    assert new == TOTAL, "ids never go backwards"
    final.wait_for(new)

    def store_agrees() -> bool:
        records = store.records()
        return set(records) == {*ids, new} and all(records[i]["state"] == views[i]["state"] for i in ids)

    wait_until(store_agrees, timeout=30, what="the store to hold every batch's final state")
    assert store.next_session_id() == new + 1
    index = store.index()
    assert sorted(int(name.split("_")[0]) for name in index) == [*ids, new], "one index entry per record"
    print(
        f"\n{store.settings['livy.server.recovery.state-store']}: faults injected: {faults} kill -9 "
        f"(first one with {phases}); batches checked: {TOTAL} (+1 after); {ended_while_down} ended while no server ran; "
        f"{sum(v['state'] == 'success' for v in views.values())} success, "
        f"{sum(v['state'] == 'dead' for v in views.values())} dead"
    )
    assert ended_while_down >= 1, "at least one driver must have ended while no server ran"
