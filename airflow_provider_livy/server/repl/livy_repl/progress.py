"""A running statement's progress: completed / all tasks of its Spark job group's jobs."""

from __future__ import annotations

import threading
import time
from typing import Any

from .log import log
from .statement import CANCELLING, RUNNING, Statement

PROGRESS_CACHE_S = 0.2  # Spark is asked at most this often per statement


def update_progress(sc: Any, stmt: Statement, lock: threading.Lock) -> None:
    """Ask Spark's status tracker, unless it was asked for this statement under PROGRESS_CACHE_S ago."""
    if sc is None or time.monotonic() - stmt.progress_at < PROGRESS_CACHE_S:
        return
    with lock:
        if time.monotonic() - stmt.progress_at < PROGRESS_CACHE_S:
            return
        try:
            tracker = sc.statusTracker()
            total = done = 0
            for job_id in tracker.getJobIdsForGroup(stmt.group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else ():
                    stage = tracker.getStageInfo(stage_id)
                    if stage:
                        total += stage.numTasks
                        done += stage.numCompletedTasks
        except Exception as exc:  # Spark stopping: keep the last figure
            log(f"progress of statement {stmt.id}: {exc}")
            return
        finally:
            stmt.progress_at = time.monotonic()
        if total and stmt.state in (RUNNING, CANCELLING):
            stmt.progress = done / total
