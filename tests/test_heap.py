"""The server's heap trimming (server/heap.py) on the host's glibc."""

from __future__ import annotations

import asyncio
import platform

import pytest

from airflow_provider_livy.server import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_gives_freed_pages_back() -> None:
    trim = heap.glibc_trim()
    assert trim is not None
    kept = [bytearray(size) for size in (600, 2000, 9000) * 10_000][::10]  # freed blocks among kept ones
    assert trim() == 1, "glibc returned no memory although ~90 MB were just freed"
    del kept  # held until after the trim, so the freed blocks lie between live ones


def test_the_trimming_task_runs_until_cancelled() -> None:
    async def run() -> None:
        task = asyncio.create_task(heap.trim_periodically(interval=0.01))
        await asyncio.sleep(0.1)
        assert task.done() is (heap.glibc_trim() is None), "it trims on and on (without glibc it has nothing to do)"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
