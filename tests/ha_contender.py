"""One member of a server group for the leadership tests, in a process of its own (so it can be killed or stopped).

    python -m tests.ha_contender HOSTS PREFIX URL SESSION_TIMEOUT

It contends for the lead and, whenever it believes it leads, creates a record every few
milliseconds through a fenced ZooKeeper store, with the id counter from ZooKeeper, as the
server's POST does. It prints one JSON line per event on stdout:
  {"event": "role", "leading": bool, "epoch": N, "leader": url, "at": t}
  {"event": "ack", "id": N, "epoch": N, "at": t}        the record is in ZooKeeper
  {"event": "failed", "epoch": N, "error": str, "refused": N, "at": t}   a create not made
On SIGTERM it hands over (Leadership.stop) and prints {"event": "released", "at": t}.

`Contender` starts one from a test or a benchmark and collects its events.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_livy.server.leadership import Leadership, Role
from airflow_provider_livy.server.stores.base import StoreUnavailable
from airflow_provider_livy.server.stores.zookeeper import ZooKeeperStore

WRITE_INTERVAL = 0.01
ROOT = Path(__file__).resolve().parent.parent

Event = dict[str, Any]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "at": time.time(), **fields}), flush=True)


async def contend(hosts: str, prefix: str, url: str, session_timeout: float) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)

    def changed(role: Role) -> None:
        emit("role", leading=role.leading, epoch=role.epoch, leader=role.leader)

    leadership = Leadership(hosts, prefix, url, session_timeout, on_change=changed)
    store = ZooKeeperStore(hosts, prefix, fence=leadership.fence)
    next_id: int | None = None
    held: dict[int, dict[str, Any]] = {}  # what this process's memory holds, as the server's would
    store.bind(held.get, lambda: next_id or 0)
    leadership.start()
    emit("started")
    epoch = 0
    while not stopping.is_set():
        role = leadership.role  # what this process believes; the fence decides whether a write lands
        if not role.leading:
            next_id = None
        else:
            if next_id is None or role.epoch != epoch:
                epoch, next_id = role.epoch, (await asyncio.to_thread(store.scan)).next_session_id
            record = {"id": next_id, "createdAt": time.time(), "state": "running", "epoch": epoch, "writer": url}
            held[next_id] = record
            try:
                await store.save(record, next_id + 1)
            except StoreUnavailable as err:
                del held[next_id]
                emit("failed", epoch=epoch, error=str(err), refused=leadership.fence.refused)
            else:
                emit("ack", id=next_id, epoch=epoch)
                next_id += 1
        await asyncio.sleep(WRITE_INTERVAL)
    leadership.stop()
    emit("released")
    store.close()


class Contender:
    """A tests.ha_contender process and the events it printed."""

    def __init__(self, hosts: str, prefix: str, name: str, session_timeout: float) -> None:
        self.url = f"http://{name}.invalid:8998"
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ha_contender", hosts, prefix, self.url, str(session_timeout)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            env=os.environ,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()

    def wait_for(self, match: Callable[[Event], bool], timeout: float, after: float = 0.0) -> Event:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event["at"] >= after and match(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.url}: no matching event within {timeout}s; events: {self.events[-8:]}")
                self._changed.wait(min(left, 0.2))

    def leads(self, timeout: float, after: float = 0.0) -> Event:
        return self.wait_for(lambda e: e["event"] == "role" and e["leading"], timeout, after)

    @property
    def leading(self) -> bool:
        roles = [e for e in self.events if e["event"] == "role"]
        return bool(roles) and roles[-1]["leading"]

    def acks(self) -> list[Event]:
        return [e for e in self.events if e["event"] == "ack"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)


def first_to_lead(contenders: list[Contender], after: float, timeout: float) -> Event:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        took = [e for c in contenders for e in list(c.events) if e["event"] == "role" and e["leading"] and e["at"] >= after]
        if took:
            return min(took, key=lambda e: e["at"])
        time.sleep(0.02)
    raise AssertionError(f"nobody took over within {timeout}s")


if __name__ == "__main__":
    asyncio.run(contend(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
