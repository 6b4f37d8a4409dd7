"""The compact index kept beside the records, so a restart never has to read what it will purge.

Livy's layout holds one record per batch under `v1/batch/<id>`; reading 40,000 of them takes
seconds. Next to them we keep `v1/batch-index/<id>_<createdAt ms>_<finishedAt ms>` (empty
entries; the finish part is empty while the batch is active). Listing that directory is one
call and tells recovery which records are long expired, so it deletes them in bulk unread.
Both stores write the entry in the same step as the record (ZooKeeper: the same transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

STATE_KEY = "state"  # {"nextSessionId": N}, as Livy writes it


def family_dirs(family: str) -> tuple[str, str]:
    """Records and index of a family: v1/batch + v1/batch-index, v1/interactive + v1/interactive-index (Livy's names)."""
    return f"v1/{family}", f"v1/{family}-index"


@dataclass
class Snapshot:
    """What a store holds, from two listings and one read: enough to plan a recovery."""

    next_session_id: int = 0
    record_ids: set[int] = field(default_factory=set)
    index: dict[int, str] = field(default_factory=dict)  # id -> its index entry's name
    duplicates: list[str] = field(default_factory=list)  # older index entries of the same id


def entry_name(record: dict[str, Any]) -> str:
    finished = record.get("finishedAt")
    return f"{record['id']}_{round(record['createdAt'] * 1000)}_{'' if finished is None else round(finished * 1000)}"


def entry_id(name: str) -> int | None:
    """The batch id of an index entry; None for a name that is not one. Kept cheap: recovery calls it 40,000 times."""
    head, _, rest = name.partition("_")
    if not head.isdigit() or rest.count("_") != 1:
        return None
    return int(head)


def entry_finished(name: str) -> float | None:
    """When the batch finished (epoch seconds), None while active or for a malformed entry."""
    tail = name[name.rfind("_") + 1 :]
    return int(tail) / 1000 if tail.isdigit() else None


def build_snapshot(next_session_id: int, record_names: Iterable[str], index_names: Iterable[str]) -> Snapshot:
    """Non-numeric record names (Livy's `state`, temp files) are skipped; of two entries for one id the finished one wins."""
    snap = Snapshot(next_session_id=next_session_id)
    snap.record_ids = {int(name) for name in record_names if name.isdigit()}
    index = snap.index
    for name in index_names:
        batch_id = entry_id(name)
        if batch_id is None:
            continue
        known = index.get(batch_id)
        if known is None:
            index[batch_id] = name
        elif (entry_finished(name) or 0) > (entry_finished(known) or 0):
            index[batch_id] = name
            snap.duplicates.append(known)
        else:
            snap.duplicates.append(name)
    return snap


def encode(record: dict[str, Any]) -> bytes:
    """A record as stored. An interactive session's `conf` echo is already redacted in memory (server/redaction.py);
    a queued session's `request`, which it needs to launch, is kept whole and dropped once launched (see README, Recovery).
    """
    return json.dumps(record, separators=(",", ":")).encode()


def encode_state(next_session_id: int) -> bytes:
    return json.dumps({"nextSessionId": next_session_id}).encode()


def decode_state(raw: bytes | None) -> int:
    """The id counter; an unreadable state counts as 0 (the record ids still keep ids unique)."""
    try:
        value = json.loads(raw or b"{}").get("nextSessionId", 0)
    except (ValueError, AttributeError):
        return 0
    return value if isinstance(value, int) and value >= 0 else 0


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
