"""Session and statement kinds, and which interpreter runs each (the same words as protocol.py's)."""

from __future__ import annotations

from typing import Any

from .errors import RequestError

KINDS = {
    "pyspark": "pyspark",
    "python": "pyspark",
    "sql": "sql",
    "spark": "spark",
    "scala": "spark",
    "sparkr": "sparkr",
    "r": "sparkr",
}
SHARED = "shared"  # a session kind only: each of its statements names its interpreter
STATEMENT_KINDS_TEXT = "pyspark (python), spark (scala), sparkr (r) or sql"


def resolve_kind(kind: Any) -> str:
    """The interpreter for a session or statement kind, or a 400 that says why not."""
    if not isinstance(kind, str):
        raise RequestError(400, f"kind must be a string, not {type(kind).__name__}")
    name = kind.lower()
    if name in KINDS:
        return KINDS[name]
    if name == SHARED:
        raise RequestError(400, f"'{SHARED}' is a session kind; a statement's kind is {STATEMENT_KINDS_TEXT}")
    raise RequestError(400, f"unknown kind '{kind}': use {STATEMENT_KINDS_TEXT}")


def resolve_session_kind(kind: Any) -> str | None:
    """A session's default interpreter; None for `shared`, whose statements must each name theirs."""
    if isinstance(kind, str) and kind.lower() == SHARED:
        return None
    return resolve_kind(kind)
