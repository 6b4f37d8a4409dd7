"""Since when a session has been seen terminal (or, for an interactive session, idle), for servers
whose views carry no timestamps (Apache Livy).

The record maps `<kind>:<id>` to `[first seen terminal (epoch s), fingerprint]`, and
`<kind>:<id>:idle` to `[first seen idle, fingerprint]`. The fingerprint
(name and appId) tells a reused id apart: a Livy restarted without recovery counts from 0 again,
and its new batch 3 must not inherit the old batch 3's age. Ids that disappeared or are no longer
terminal are pruned on every update, so the record stays as small as the server's finished (and idle) set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

Record = dict[str, list[Any]]

VARIABLE_PREFIX = "livy_maintenance_terminal_since"


def variable_key(conn_id: str) -> str:
    """One Airflow Variable per connection: two servers never share ids."""
    return f"{VARIABLE_PREFIX}__{conn_id}"


def key(kind: str, session_id: int) -> str:
    return f"{kind}:{session_id}"


def idle_key(kind: str, session_id: int) -> str:
    return f"{kind}:{session_id}:idle"


def fingerprint(view: Mapping[str, Any]) -> str:
    return f"{view.get('name') or ''}|{view.get('appId') or ''}"


def parse(text: str | None) -> Record:
    """The stored record; anything unreadable starts afresh (it only delays deletion by one min_age)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], (int, float))}


def dump(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), sort_keys=True)


def first_seen(previous: Record, current: Record, session_key: str, print_: str, now: float) -> float:
    """When this session was first seen terminal; noted in `current`, which becomes the next record."""
    since, known = previous.get(session_key, (now, print_))
    if known != print_:
        since = now
    current[session_key] = [since, print_]
    return since
