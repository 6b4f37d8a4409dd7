"""What Airflow's providers manager reads through the `apache_airflow_provider` entry point.

The connection type is `livy_batch`, not `livy`: the official provider owns `livy`, users install
both, and two packages registering one type would fight over its form. Our hook still accepts
`livy` connections, so nothing has to be re-created. The extra fields are declared here
(`conn-fields`) because Airflow 3's connection form reads them from provider info, not from hooks.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_livy import __version__

CONN_TYPE = "livy_batch"
HOOK_CLASS = "airflow_provider_livy.hooks.livy.LivyHook"
# Spark SQL for Airflow's SQL operators: its own type, since get_hook() maps one type to one hook class.
SQL_CONN_TYPE = "livy_sql"
SQL_HOOK_CLASS = "airflow_provider_livy.hooks.livy_sql.LivySqlHook"
INTEGRATION = "Livy batch server"

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "verify": {
        "label": "Verify TLS certificate",
        "description": "For https: check the server's certificate. Turn off only for a self-signed test server.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ca_bundle": {
        "label": "CA bundle path",
        "description": "A CA certificate file (PEM) to verify the server with, instead of the system store.",
        "schema": {"type": ["string", "null"]},
    },
    "auth_kind": {
        "label": "Authentication",
        "description": "basic: HTTP basic auth from Login/Password (nothing is sent when Login is empty); "
        "kerberos: SPNEGO with the worker's ticket cache, or the keytab below; "
        "none: no credentials; class: the requests auth class below.",
        "schema": {"type": "string", "enum": ["basic", "kerberos", "none", "class"], "default": "basic"},
    },
    "keytab": {
        "label": "Kerberos keytab",
        "description": "For Authentication = kerberos: a client keytab on the worker to sign in with, instead of "
        "the worker's ticket cache (kinit / airflow kerberos).",
        "schema": {"type": ["string", "null"]},
    },
    "principal": {
        "label": "Kerberos principal",
        "description": "Whose key the keytab holds (e.g. etl@EXAMPLE.COM); without a keytab, which ticket of the cache.",
        "schema": {"type": ["string", "null"]},
    },
    "service_principal": {
        "label": "Server's Kerberos principal",
        "description": "Only when it is not HTTP/<the host above>@REALM, e.g. behind a load balancer.",
        "schema": {"type": ["string", "null"]},
    },
    "auth_class": {
        "label": "Auth class",
        "description": "Dotted path of a requests.auth.AuthBase subclass, for Authentication = class, "
        "e.g. requests_kerberos.HTTPKerberosAuth.",
        "schema": {"type": ["string", "null"]},
    },
    "auth_kwargs": {
        "label": "Auth class arguments",
        "description": "JSON object of keyword arguments for the auth class.",
        "schema": {"type": ["object", "null"], "format": "json"},
    },
    "headers": {
        "label": "Extra HTTP headers",
        "description": 'JSON object of headers sent with every request, e.g. {"X-Gateway-Token": "..."}. '
        "X-Requested-By is always sent.",
        "schema": {"type": ["object", "null"], "format": "json"},
    },
    "endpoint_prefix": {
        "label": "Endpoint prefix",
        "description": "Path in front of /batches when Livy sits behind a gateway, e.g. /gateway/default/livy/v1.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Time limit for each HTTP call (connect and read).",
        "schema": {"type": ["number", "null"], "minimum": 1, "default": 30},
    },
    "zookeeper_hosts": {
        "label": "ZooKeeper hosts",
        "description": "host:port[,host:port...] of the ensemble holding Livy's recovery state; "
        "the maintenance DAG sweeps it. Leave empty when recovery is off.",
        "schema": {"type": ["string", "null"]},
    },
    "zookeeper_prefix": {
        "label": "ZooKeeper key prefix",
        "description": "livy.server.recovery.zk-state-store.key-prefix of the server (Livy's default: livy).",
        "schema": {"type": ["string", "null"], "default": "livy"},
    },
    "zookeeper_auth": {
        "label": "ZooKeeper identity",
        "description": "The server's livy.server.recovery.zk-state-store.auth (digest:<user>:<password>, "
        "sasl:DIGEST-MD5:<user>:<password> or sasl), so the sweep may read and delete its records.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
}

SQL_CONN_FIELDS: dict[str, dict[str, Any]] = {
    **CONN_FIELDS,
    "session_conf": {
        "label": "Spark conf for SQL sessions",
        "description": 'JSON object of Spark settings for every sql session, e.g. {"spark.sql.shuffle.partitions": "8"}.',
        "schema": {"type": ["object", "null"], "format": "json"},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": [],
    "relabeling": {"schema": "Scheme"},
    "placeholders": {
        "host": "livy.example.com (or https://livy.example.com)",
        "port": "8998",
        "schema": "http or https",
        "login": "user for basic auth (optional)",
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-livy",
        "name": "Livy batch server",
        "description": "Livy batches from Airflow, plus a Livy-compatible Spark server; no session is ever left behind.",
        "versions": [__version__],
        "integrations": [{"integration-name": INTEGRATION, "external-doc-url": "https://livy.apache.org/", "tags": ["apache"]}],
        "operators": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_livy.operators.livy"]}],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_livy.sensors.livy"]}],
        "hooks": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["airflow_provider_livy.hooks.livy", "airflow_provider_livy.hooks.livy_sql"],
            }
        ],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["airflow_provider_livy.triggers.livy"]}],
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS,
                "hook-name": "Livy batch server (airflow-provider-livy)",
                "connection-type": CONN_TYPE,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            },
            {
                "hook-class-name": SQL_HOOK_CLASS,
                "hook-name": "Livy Spark SQL (airflow-provider-livy)",
                "connection-type": SQL_CONN_TYPE,
                "conn-fields": SQL_CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            },
        ],
    }
