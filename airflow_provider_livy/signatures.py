"""A subclass's __init__ as help(), IDEs and Airflow's default_args see it: its own arguments, then its
parent's (which may have inherited theirs), then **kwargs. The operators and sensors pass their parents'
arguments on through **kwargs; this keeps every argument visible on every class."""

from __future__ import annotations

import inspect
from typing import Any


def inherit_signature(cls: type) -> None:
    """Give `cls.__init__` (if `cls` defines one) a signature that lists its parent's arguments too."""
    if "__init__" not in vars(cls):
        return
    parent = next(base for base in cls.__mro__[1:] if "__init__" in vars(base))
    own = [p for p in inspect.signature(cls.__init__).parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    rest = [p for p in inspect.signature(parent.__init__).parameters.values() if p.name not in names and p.name != "self"]
    merged: Any = inspect.Signature(own + rest)
    cls.__init__.__signature__ = merged  # type: ignore[misc]
