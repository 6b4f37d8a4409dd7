"""LivySqlHook: Spark SQL through a Livy `sql` session, for Airflow's SQL operators.

A `livy_sql` connection (the same fields as `livy_batch`, plus an optional `session_conf` extra of
Spark settings) makes `SQLExecuteQueryOperator(conn_id=..., sql=...)`, the SQL check operators and
`get_records`/`get_first` run on Spark. Each `get_conn()` is a new session; Airflow's DbApiHook
closes it after every run, and closing deletes the session, so nothing is left behind.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from airflow.providers.common.sql.hooks.sql import DbApiHook

from airflow_provider_livy.hooks import livy_dbapi
from airflow_provider_livy.hooks.connection import DEFAULT_CONN_ID, LivyConfigError
from airflow_provider_livy.hooks.livy import LivyHook

SQL_CONN_TYPE = "livy_sql"


class LivySqlHook(DbApiHook):
    """A DbApiHook whose connections are `livy_dbapi` connections (one Livy `sql` session each).

    :param livy_conn_id: a `livy_sql` connection (any Livy connection works when the hook is built directly).
    :param session_conf: Spark conf for the session, over the connection's `session_conf` extra.
    :param statement_timeout: seconds one statement may run before it is cancelled.
    :param polling_interval: the longest wait between polls of a running statement.
    """

    conn_name_attr = "livy_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = SQL_CONN_TYPE
    hook_name = "Livy Spark SQL (airflow-provider-livy)"
    supports_autocommit = True  # every Spark SQL statement takes effect at once
    connector = livy_dbapi  # the PEP 249 module, for whoever looks it up

    def __init__(
        self,
        *args: Any,
        session_conf: dict[str, Any] | None = None,
        statement_timeout: float | None = None,
        polling_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.session_conf = session_conf
        self.statement_timeout = statement_timeout
        self.polling_interval = polling_interval

    def _conf(self) -> dict[str, str]:
        extra = self.connection_extra.get("session_conf") or {}
        if isinstance(extra, str):
            try:
                extra = json.loads(extra)
            except ValueError as err:
                raise LivyConfigError(f"connection extra 'session_conf' is not valid JSON: {err}") from None
        if not isinstance(extra, dict):
            raise LivyConfigError("connection extra 'session_conf' must be a JSON object of Spark settings")
        return {str(k): str(v) for k, v in {**extra, **(self.session_conf or {})}.items()}

    def get_conn(self) -> livy_dbapi.Connection:
        """A new sql session, idle and ready; closing the connection deletes it."""
        hook = LivyHook(self.get_conn_id())
        return livy_dbapi.connect(
            hook,
            name=f"airflow-sql-{uuid.uuid4().hex[:16]}",
            conf=self._conf() or None,
            polling_interval=self.polling_interval,
            statement_timeout=self.statement_timeout,
        )

    def get_uri(self) -> str:
        return LivyHook(self.get_conn_id()).settings.base_url
