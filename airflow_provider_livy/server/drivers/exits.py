"""Noticing the moment a driver exits, for all live drivers through one file descriptor.

Each driver's supervisor gets a pidfd (Linux >= 5.3), which becomes readable when the process ends.
The pidfds go into one epoll of our own, and only that epoll is registered with the event loop: an
asyncio reader per driver cost about 600 bytes of server memory per live session (its selector key,
handle and callback), this costs a dict entry. Without pidfds the lifecycle's monitor polls instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from collections.abc import Callable


class ExitWatch:
    """Calls on_exit(key) once the process added under `key` has ended."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_exit: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._epoll = select.epoll()
        self._keys: dict[int, int] = {}  # pidfd -> key
        loop.add_reader(self._epoll.fileno(), self._ready)

    @staticmethod
    def available() -> bool:
        return hasattr(os, "pidfd_open") and hasattr(select, "epoll")

    def add(self, pid: int, key: int) -> None:
        """Watch `pid`; one already gone cannot be, and the lifecycle's monitor notices it instead."""
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return
        self._epoll.register(fd, select.EPOLLIN)
        self._keys[fd] = key

    def _ready(self) -> None:
        for fd, _events in self._epoll.poll(0):
            self._epoll.unregister(fd)
            os.close(fd)
            self._on_exit(self._keys.pop(fd))

    def close(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._epoll.fileno())
        for fd in self._keys:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._keys.clear()
        self._epoll.close()
