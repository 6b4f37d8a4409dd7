"""The two exceptions of the REPL: a request it refuses, and a statement's cancel raised in user code."""

from __future__ import annotations


class RequestError(Exception):
    """A request we refuse: answered with `status` and `{"msg": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StatementCancelled(KeyboardInterrupt):
    """Raised in user code when its statement is cancelled (a KeyboardInterrupt, as Ctrl-C in a shell)."""
