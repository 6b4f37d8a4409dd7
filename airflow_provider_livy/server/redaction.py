"""Which `conf` values the server never shows or stores: the ones that look like credentials.

Spark's own rule (`spark.redaction.regex`'s default) plus API keys, which OpenLineage's HTTP transport
(`spark.openlineage.transport.auth.apiKey`) and similar clients put in a job's conf. A session's view echoes
its conf, and its store record keeps that echo for a restart: both hold the redacted copy. The launch
itself gets the conf as requested.
"""

from __future__ import annotations

import re
from typing import Any

REDACTION = re.compile(r"(?i)secret|password|token|access[.]?key|api[._-]?key")
REDACTED = "*********(redacted)"  # what Spark shows in its place


def redact(conf: dict[str, Any]) -> dict[str, Any]:
    """A copy of `conf` in which a key or value that looks secret has Spark's dummy text for its value."""
    return {key: REDACTED if REDACTION.search(key) or REDACTION.search(str(value)) else value for key, value in conf.items()}
