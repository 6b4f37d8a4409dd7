"""The lifecycle's clocks and limits in-process, without a server or a driver: retention, the batch ttl,
an interactive session's start, idle, ttl and heartbeat clocks, eviction order across families, creation
slots, and recovery's notes on a log that cannot be written.

The clock is injected where the lifecycle takes it (SessionService(clock=...)): the registry, the
families and the interactive side all read that one, so moving it moves every deadline. Sessions are
registered as recovery registers them (no driver: pid None), so ending one is a plain state change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import pytest

from airflow_provider_livy.protocol import BATCHES, BUSY, DEAD, IDLE, KILLED, RUNNING, SESSIONS, STARTING, SUCCESS
from airflow_provider_livy.server.config import ServerConfig, load_config
from airflow_provider_livy.server.sessions.capacity import Capacity, ServerBusy
from airflow_provider_livy.server.sessions.lifecycle import SessionService, family_services
from airflow_provider_livy.server.sessions.model import HEARTBEAT, IDLE_CLOCK, START, TTL, Repl, Session
from airflow_provider_livy.server.sessions.recovery import Recovery
from airflow_provider_livy.server.stores import open_store
from tests.test_faults import tiny_tmpfs

T0 = 1_800_000_000.0


class Clock:
    """Wall-clock seconds that move only when told to."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(tmp_path: Path, **settings: str) -> ServerConfig:
    merged = {"livy.server.log-dir": str(tmp_path / "logs"), "livy.server.port": "18998", **settings}
    return load_config(None, [f"{key}={value}" for key, value in merged.items()])


def held(service: SessionService, session_id: int, state: str, created: float, finished: float | None = None) -> Session:
    """A session registered as recovery registers one: no driver process of ours."""
    session = Session(
        id=session_id, name=None, owner=None, proxy_user=None, state=state, created_at=created,
        app_tag=f"livy-{service.family.protocol.word}-{session_id}", finished_at=finished,
    )  # fmt: skip
    if service.family.protocol is SESSIONS:
        session.repl = Repl.new({"kind": "pyspark"}, service.config.session_timeout, created)
    service.registry.add(session)
    return session


def run(coro_factory):  # type: ignore[no-untyped-def]
    """Run on an event loop of its own, and let the background work it spawned finish."""

    async def main() -> None:
        await coro_factory()
        for _ in range(20):
            await asyncio.sleep(0)

    asyncio.run(main())


# --- retention ------------------------------------------------------------------------------------
def test_a_finished_session_is_forgotten_at_finished_plus_retain_and_not_before(tmp_path: Path) -> None:
    clock = Clock()
    service = SessionService(make_config(tmp_path, **{"livy.server.session.state-retain.sec": "60s"}), clock=clock)
    done = held(service, 0, SUCCESS, created=T0 - 100, finished=T0 - 10)
    kept = held(service, 1, RUNNING, created=T0 - 100)
    assert service.registry.next_deadline() == T0 + 50
    assert service.views.expires_at(done) == T0 + 50 and service.views.expires_at(kept) is None
    (service.files.directory / "0.log").write_text("line\n")

    async def collect() -> None:
        clock.advance(49.9)
        service.collector.collect_due()
        assert service.registry.get(0) is done, "not a moment early"
        clock.advance(0.1)
        service.collector.collect_due()

    run(collect)
    assert service.registry.get(0) is None and service.registry.get(1) is kept
    assert service.registry.counters["collected"] == 1
    assert not (service.files.directory / "0.log").exists(), "its log goes with it"


def test_a_session_finishing_now_gets_the_full_retention_from_the_injected_clock(tmp_path: Path) -> None:
    clock = Clock()
    service = SessionService(make_config(tmp_path, **{"livy.server.session.state-retain.sec": "30s"}), clock=clock)
    session = held(service, 0, RUNNING, created=T0 - 5)
    clock.advance(7)
    service.registry.set_state(session, DEAD)
    assert session.finished_at == T0 + 7
    assert service.registry.expires_at(session) == T0 + 37 == service.registry.next_deadline()


# --- the batch ttl ------------------------------------------------------------------------------
def test_batch_ttl_kills_a_running_batch_at_created_plus_ttl(tmp_path: Path) -> None:
    clock = Clock()
    service = SessionService(make_config(tmp_path, **{"livy.server.batch.ttl": "120s"}), clock=clock)
    batch = held(service, 0, RUNNING, created=T0 - 100)
    assert service.registry.next_deadline() == T0 + 20

    async def collect() -> None:
        clock.advance(19)
        service.collector.collect_due()
        assert batch.state == RUNNING
        clock.advance(1)
        service.collector.collect_due()

    run(collect)
    assert batch.state == KILLED and service.registry.counters["ttl_killed"] == 1
    assert "killed after running longer than livy.server.batch.ttl (120s)" in service.files.log(0).read_text()


def test_without_a_ttl_an_active_batch_has_no_live_deadline(tmp_path: Path) -> None:
    service = SessionService(make_config(tmp_path), clock=Clock())
    held(service, 0, RUNNING, created=T0)
    assert service.registry.next_deadline() is None


# --- an interactive session's clocks --------------------------------------------------------------
def test_sessions_share_the_clock_given_to_the_service(tmp_path: Path) -> None:
    clock = Clock()
    service = SessionService(make_config(tmp_path), clock=clock, family=SESSIONS)
    assert service.registry.clock is clock and service.family.interactive is not None
    session = held(service, 0, IDLE, created=T0)
    clock.advance(3)
    service.family.interactive.touch(session)
    assert session.repl is not None and session.repl.last_activity == T0 + 3


def test_idle_clock_ends_an_idle_session_and_activity_moves_it_later(tmp_path: Path) -> None:
    clock = Clock()
    service = SessionService(make_config(tmp_path, **{"livy.server.session.timeout": "100s"}), clock=clock, family=SESSIONS)
    session = held(service, 0, IDLE, created=T0)
    assert session.repl is not None
    assert service.registry.next_deadline() == T0 + 100
    assert service.views.expires_at(session) == T0 + 100, "the view says when idleness ends it"
    interactive = service.family.interactive
    assert interactive is not None

    async def collect() -> None:
        clock.advance(60)
        interactive.touch(session)  # a statement: the idle clock starts again
        clock.advance(40)
        service.collector.collect_due()  # the old entry came due: re-armed, not ended
        assert session.state == IDLE and service.registry.next_deadline() == T0 + 160
        clock.advance(60)
        service.collector.collect_due()

    run(collect)
    assert session.state == KILLED and session.repl.ended_by == IDLE_CLOCK
    assert interactive.ended[IDLE_CLOCK] == 1
    assert "session ended: idle for 100s" in service.files.log(0).read_text()


def test_a_busy_session_never_idles_out_but_its_ttl_still_ends_it(tmp_path: Path) -> None:
    clock = Clock()
    config = make_config(tmp_path, **{"livy.server.session.timeout": "10s"})
    service = SessionService(config, clock=clock, family=SESSIONS)
    session = Session(id=0, name=None, owner=None, proxy_user=None, state=BUSY, created_at=T0, app_tag="t")
    session.repl = Repl.new({"kind": "pyspark", "ttl": "1h"}, config.session_timeout, T0)
    service.registry.add(session)
    assert session.repl.deadline(BUSY, T0, config.session_timeout) == (T0 + 3600, TTL)
    assert service.views.expires_at(session) == T0 + 3600
    assert session.repl.deadline(IDLE, T0, config.session_timeout) == (T0 + 10, IDLE_CLOCK)

    async def collect() -> None:
        clock.advance(3599)
        service.collector.collect_due()
        assert session.state == BUSY, "an hour of statements is not idleness"
        clock.advance(1)
        service.collector.collect_due()

    run(collect)
    assert session.state == KILLED and session.repl.ended_by == TTL


def test_heartbeat_clock_ends_a_session_whose_client_stopped_calling(tmp_path: Path) -> None:
    clock = Clock()
    config = make_config(tmp_path, **{"livy.server.session.timeout": "1h"})
    service = SessionService(config, clock=clock, family=SESSIONS)
    session = Session(id=0, name=None, owner=None, proxy_user=None, state=IDLE, created_at=T0, app_tag="t")
    session.repl = Repl.new({"kind": "pyspark", "heartbeatTimeoutInSecond": 30}, config.session_timeout, T0)
    service.registry.add(session)
    interactive = service.family.interactive
    assert interactive is not None

    async def collect() -> None:
        clock.advance(20)
        service.family.heartbeat(session)  # GET /sessions/0: the client is alive
        clock.advance(29)
        service.collector.collect_due()
        assert session.state == IDLE and service.registry.next_deadline() == T0 + 50
        clock.advance(1)
        service.collector.collect_due()

    run(collect)
    assert session.state == KILLED and session.repl.ended_by == HEARTBEAT
    assert "no client called /sessions/0 for 30s" in service.files.log(0).read_text()


def test_a_start_that_takes_longer_than_the_session_timeout_ends_it(tmp_path: Path) -> None:
    clock = Clock()
    service = SessionService(make_config(tmp_path, **{"livy.server.session.timeout": "50s"}), clock=clock, family=SESSIONS)
    session = held(service, 0, STARTING, created=T0)
    assert session.repl is not None and session.repl.deadline(STARTING, T0, 50) == (T0 + 50, START)

    async def collect() -> None:
        clock.advance(50)
        service.collector.collect_due()

    run(collect)
    assert session.state == KILLED and session.repl.ended_by == START


# --- the shared limits ----------------------------------------------------------------------------
def test_eviction_takes_the_session_that_finished_first_across_families(tmp_path: Path) -> None:
    batches, sessions = family_services(make_config(tmp_path, **{"livy.server.session.max-sessions": "4"}))
    held(batches, 0, SUCCESS, created=T0, finished=T0 + 30)
    held(sessions, 0, DEAD, created=T0, finished=T0 + 10)
    held(batches, 1, DEAD, created=T0, finished=T0 + 20)
    held(sessions, 1, IDLE, created=T0)
    capacity = batches.capacity
    assert capacity is sessions.capacity and capacity.held() == 4

    def gone() -> set[tuple[str, int]]:
        return {(s.family.protocol.word, i) for s in (batches, sessions) for i in (0, 1) if s.registry.get(i) is None}

    async def evict() -> None:
        capacity.make_room()
        assert gone() == {("session", 0)}
        held(batches, 10, RUNNING, created=T0)  # what the room was made for
        capacity.make_room()
        assert gone() == {("session", 0), ("batch", 1)}
        held(batches, 11, RUNNING, created=T0)
        capacity.make_room()
        assert gone() == {("session", 0), ("batch", 1), ("batch", 0)}
        held(batches, 12, RUNNING, created=T0)
        with pytest.raises(ServerBusy, match="all still active"):
            capacity.make_room()  # four held, all active: nothing is taken from a running one

    run(evict)
    assert batches.registry.counters["evicted"] == 2 and sessions.registry.counters["evicted"] == 1


def test_creation_slots_count_both_families(tmp_path: Path) -> None:
    config = make_config(tmp_path, **{"livy.server.session.max-creation": "2"})
    capacity = Capacity(config)
    batches = SessionService(config, family=BATCHES, capacity=capacity)
    sessions = SessionService(config, family=SESSIONS, capacity=capacity)

    async def launch() -> None:
        assert capacity.slot_free()
        batches.launches.launching.add(0)
        assert capacity.slot_free()
        sessions.launches.launching.add(0)
        assert not capacity.slot_free()
        sessions.mark_up(held(sessions, 0, STARTING, created=T0), IDLE)  # its driver is up: the slot frees
        assert capacity.slot_free() and not sessions.launches.launching

    run(launch)


# --- recovery with a log it cannot write -------------------------------------------------------
def test_recovery_goes_on_when_the_log_disk_is_full(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A restart finds a batch whose driver is gone; the line saying so cannot be written to its log
    (a full tmpfs as the log disk). Recovery's work once serving must still finish: the server log
    says why, and the record is saved as dead."""
    with tiny_tmpfs(tmp_path / "logs", "size=16k"):
        filler = tmp_path / "logs" / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            while True:
                handle.write(b"x" * 4096)
                handle.flush()
        recover_with_full_log_disk(tmp_path, caplog)


def recover_with_full_log_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(
        tmp_path,
        **{
            "livy.server.recovery.mode": "recovery",
            "livy.server.recovery.state-store": "filesystem",
            "livy.server.recovery.state-store.url": f"file://{tmp_path / 'store'}",
        },
    )
    store = open_store(config, BATCHES.name)
    record = {"id": 5, "state": RUNNING, "createdAt": T0, "appTag": "livy-batch-5", "pid": 2**22 + 7, "pidStart": 1.0}
    (tmp_path / "store" / "v1" / "batch" / "5").write_bytes(json.dumps(record).encode())
    service = SessionService(config, store, clock=Clock(T0 + 60))
    recovery = Recovery(service, store)
    recovery.run_foreground()
    assert service.registry.get(5) is not None and service.registry.get(5).state == DEAD  # type: ignore[union-attr]

    async def background() -> None:
        with caplog.at_level(logging.WARNING):
            await recovery.run_background()

    run(background)
    assert "gone without leaving an exit code" in caplog.text and "could not write it to its log" in caplog.text
    saved = json.loads((tmp_path / "store" / "v1" / "batch" / "5").read_bytes())
    assert saved["state"] == DEAD
    store.close()
