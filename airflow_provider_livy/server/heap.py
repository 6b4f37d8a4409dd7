"""Giving freed heap memory back to the system, so the server's RSS follows what it holds.

Python frees objects into glibc's heap, which keeps the pages: after bursts of requests, driver
call-backs and log reads, the heap of a server holding 1,000 idle sessions had about 2 MB free but
resident (measured: `malloc_trim` returned it), more than the sessions themselves hold (1.2 MB). glibc hands
such pages back only when asked, so the server asks every TRIM_INTERVAL seconds, off the event
loop (one call takes a few milliseconds), and the cluster follower asks after each big poll
(drivers/cluster.py). Elsewhere (musl, macOS) there is nothing to call.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

TRIM_INTERVAL = 5.0  # seconds


@functools.cache
def glibc_trim() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none."""
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


async def trim_periodically(interval: float = TRIM_INTERVAL) -> None:
    """Run until cancelled (the app's lifespan owns the task)."""
    trim = glibc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: the heap is left to the allocator")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)
