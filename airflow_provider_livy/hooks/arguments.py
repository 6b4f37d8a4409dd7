"""Python arguments -> Livy request bodies: what operators and the official hook methods take (numbers in
`args` and `conf`, numbers as strings from templates) turned into the fields the protocol validates."""

from __future__ import annotations

from typing import Any

from airflow_provider_livy.protocol import (
    BATCH_REQUEST_FIELDS,
    INT,
    NON_NEGATIVE_INT,
    OPERATOR_ARGUMENTS,
    STR_LIST,
    STR_MAP,
    validate_batch_request,
)


def _conf_value(value: Any) -> Any:
    """Spark conf values are strings; write booleans the way Spark spells them."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, (int, float)) else value


def _coerce(kind: str, value: Any) -> Any:
    """Accept what templating and Python habits produce (numbers as strings, numbers in conf)."""
    if kind in (INT, NON_NEGATIVE_INT) and isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if kind == STR_LIST and isinstance(value, (tuple, list)):
        return [str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value]
    if kind == STR_MAP and isinstance(value, dict):
        return {k: _conf_value(v) for k, v in value.items()}
    return value


def request_body(arguments: dict[str, Any], table: dict[str, str], fields: dict[str, str]) -> dict[str, Any]:
    """Operator arguments -> request fields (`table` maps one to the other), coerced, not yet validated."""
    return {table[arg]: _coerce(fields[table[arg]], value) for arg, value in arguments.items()}


def build_request(arguments: dict[str, Any]) -> dict[str, Any]:
    """Batch arguments (file, class_name, args, ...) -> a validated POST /batches body. Raises BatchRequestError."""
    return validate_batch_request(request_body(arguments, OPERATOR_ARGUMENTS, BATCH_REQUEST_FIELDS))
