"""Server configuration: Livy's `livy.conf` keys, parsed into one frozen object.

Key names follow Livy wherever Livy has one, so an existing livy.conf mostly works as is.
Durations need a unit: in Livy a bare number silently means milliseconds for some keys and
seconds for others, which is how a retention of "600" becomes 0.6 s; we refuse it instead.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from airflow_provider_livy.protocol import MAX_STATE_WAIT, duration_seconds

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration value or file the server cannot start with."""


def parse_duration(key: str, text: str) -> float:
    """'600s', '10m', '1h', '1.5d' -> seconds. A bare number is refused: its unit is ambiguous in Livy."""
    seconds = duration_seconds(text)
    if seconds is None:
        raise ConfigError(
            f"{key} = {text!r}: a duration needs a unit (ms, s, m, h or d), e.g. '600s' or '10m'; "
            "a bare number is refused because Livy reads it as milliseconds for some keys"
        )
    return seconds


def parse_bool(key: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"{key} = {text!r}: expected true or false")


def parse_int(key: str, text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{key} = {text!r}: expected a whole number") from None
    if value < 1:
        raise ConfigError(f"{key} = {text!r}: must be at least 1")
    return value


def parse_list(_key: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_str(_key: str, text: str) -> str:
    return text.strip()


def parse_choice(*choices: str) -> Callable[[str, str], str]:
    def parse(key: str, text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ConfigError(f"{key} = {text!r}: expected one of {', '.join(choices)}")
        return value

    return parse


def parse_zk_auth(key: str, text: str) -> str:
    """Checked here so a malformed identity stops the start; the ZooKeeper store parses it again when it connects."""
    from airflow_provider_livy.zookeeper_auth import ZooKeeperAuthError, parse_auth  # kazoo only when it is set

    try:
        parse_auth(text, key)
    except ZooKeeperAuthError as err:
        raise ConfigError(str(err)) from None
    return text.strip()


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8998
    spark_master: str = "local[*]"
    deploy_mode: str = ""
    spark_home: str = ""  # empty: SPARK_HOME, else the Spark inside the pyspark package
    state_retain: float = 600.0
    session_timeout: float = 3600.0
    max_creation: int = 8
    max_sessions: int = 10_000
    batch_ttl: float = 0.0  # 0: running batches live as long as they like
    state_wait_max: float = MAX_STATE_WAIT  # longest hold of GET /batches/{id}/state?wait=S
    local_dir_whitelist: tuple[str, ...] = ()
    csrf_protection: bool = False
    cache_log_size: int = 200
    log_dir: str = ""  # empty: see drivers.logs.default_log_dir
    state_dir: str = ""  # empty: $XDG_STATE_HOME/livy-server, else ~/.local/state/livy-server
    recovery_mode: str = "off"
    state_store: str = "filesystem"
    state_store_url: str = ""
    zk_key_prefix: str = "livy"
    ha_advertised_url: str = ""  # empty: http://<livy.server.host>:<livy.server.port>
    ha_session_timeout: float = 10.0  # the ZooKeeper session of the group's election: it bounds a crash failover
    ha_standby: str = "proxy"  # what a standby does with an API request: proxy it to the leader, or redirect (307)
    zk_auth: str = dataclasses.field(default="", repr=False)  # zookeeper_auth.parse_auth; holds a password
    auth_type: str = "none"
    auth_users_file: str = ""
    kerberos_principal: str = ""  # HTTP/_HOST@REALM; _HOST becomes this host's name
    kerberos_keytab: str = ""
    kerberos_name_rules: str = "DEFAULT"
    ldap_url: str = ""
    ldap_base_dn: str = ""
    ldap_user_filter: str = ""  # e.g. (uid={user}); empty: bind as uid=<user>,<base-dn>
    ldap_domain: str = ""  # Active Directory: bind as <user>@<domain>
    ldap_security_authentication: str = "simple"
    ldap_start_tls: bool = False
    ldap_timeout: float = 5.0
    ldap_ca_file: str = ""  # the CA the directory's certificate is checked against; empty: the system's store
    auth_cache_ttl: float = 300.0  # how long a successful sign-in is remembered (cookie and credential cache)
    auth_max_failures: int = 10  # failed sign-ins per client address per window before it must wait
    auth_failure_window: float = 60.0
    launch_principal: str = ""  # spark-submit --principal (livy.server.launch.kerberos.principal)
    launch_keytab: str = ""  # spark-submit --keytab; never shown
    access_control: bool = False
    superusers: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ("*",)  # with access control on, who may use the server at all
    view_users: tuple[str, ...] = ()  # may view every batch
    modify_users: tuple[str, ...] = ()  # may view and delete every batch
    impersonation: bool = False
    allowed_impersonators: tuple[str, ...] = ()
    max_body_bytes: int = 1_048_576
    repl_idle_timeout: float = 600.0  # a driver no server reached for this long exits (livy.rsc.server.idle-timeout)
    retained_statements: int = 100  # statements each driver keeps
    sql_num_rows: int = 1000  # rows of one sql statement's answer
    statement_max_output: int = 1_048_576  # bytes of one statement's output; longer is cut with a marker
    cluster_poll_interval: float = 2.0  # one status request per cluster per interval, for all its drivers
    standalone_ui_url: str = ""  # empty: http://<master host>:8080
    standalone_rest_url: str = ""  # empty: http://<master host>:6066
    yarn_rm_addresses: tuple[str, ...] = ()  # ResourceManager web addresses, HA: all of them
    k8s_api_url: str = ""  # empty: https://kubernetes.default.svc
    k8s_namespace: str = "default"
    k8s_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a secret
    k8s_ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    launcher_address: str = ""  # the host drivers in a cluster call back (livy.rsc.launcher.address); empty: see README

    @property
    def recovery(self) -> bool:
        """Records persist (recovery mode recovery or ha)."""
        return self.recovery_mode in ("recovery", "ha")

    @property
    def ha(self) -> bool:
        """One of several servers on one ZooKeeper, only the leader working (server.leadership)."""
        return self.recovery_mode == "ha"

    @property
    def advertised_url(self) -> str:
        return self.ha_advertised_url or f"http://{self.host}:{self.port}"

    @property
    def cluster_mode(self) -> bool:
        """The driver runs on a cluster node, handed over by spark-submit; local masters have no cluster."""
        return self.deploy_mode == "cluster" and not self.spark_master.startswith("local")


# livy.conf key -> (ServerConfig field, parser). Livy's names where Livy has them.
KEYS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "livy.server.host": ("host", parse_str),
    "livy.server.port": ("port", parse_int),
    "livy.spark.master": ("spark_master", parse_str),
    "livy.spark.deploy-mode": ("deploy_mode", parse_choice("", "client", "cluster")),
    "livy.server.spark-home": ("spark_home", parse_str),
    "livy.server.session.state-retain.sec": ("state_retain", parse_duration),
    "livy.server.session.timeout": ("session_timeout", parse_duration),
    "livy.server.session.max-creation": ("max_creation", parse_int),
    "livy.server.session.max-sessions": ("max_sessions", parse_int),
    "livy.server.batch.ttl": ("batch_ttl", parse_duration),
    "livy.server.batch.state-wait.max": ("state_wait_max", parse_duration),
    "livy.file.local-dir-whitelist": ("local_dir_whitelist", parse_list),
    "livy.server.csrf-protection.enabled": ("csrf_protection", parse_bool),
    "livy.cache-log.size": ("cache_log_size", parse_int),
    "livy.server.log-dir": ("log_dir", parse_str),
    "livy.server.state-dir": ("state_dir", parse_str),
    "livy.server.recovery.mode": ("recovery_mode", parse_choice("off", "recovery", "ha")),
    "livy.server.recovery.state-store": ("state_store", parse_choice("filesystem", "zookeeper")),
    "livy.server.recovery.state-store.url": ("state_store_url", parse_str),
    "livy.server.recovery.zk-state-store.key-prefix": ("zk_key_prefix", parse_str),
    "livy.server.ha.advertised-url": ("ha_advertised_url", parse_str),
    "livy.server.ha.session-timeout": ("ha_session_timeout", parse_duration),
    "livy.server.ha.standby": ("ha_standby", parse_choice("proxy", "redirect")),
    "livy.server.recovery.zk-state-store.auth": ("zk_auth", parse_zk_auth),
    "livy.server.auth.type": ("auth_type", parse_choice("none", "basic", "kerberos", "ldap")),
    "livy.server.auth.basic.users-file": ("auth_users_file", parse_str),
    "livy.server.auth.kerberos.principal": ("kerberos_principal", parse_str),
    "livy.server.auth.kerberos.keytab": ("kerberos_keytab", parse_str),
    "livy.server.auth.kerberos.name-rules": ("kerberos_name_rules", parse_str),
    "livy.server.auth.ldap.url": ("ldap_url", parse_str),
    "livy.server.auth.ldap.base-dn": ("ldap_base_dn", parse_str),
    "livy.server.auth.ldap.user-filter": ("ldap_user_filter", parse_str),
    "livy.server.auth.ldap.domain": ("ldap_domain", parse_str),
    "livy.server.auth.ldap.security-authentication": ("ldap_security_authentication", parse_choice("simple")),
    "livy.server.auth.ldap.enablestarttls": ("ldap_start_tls", parse_bool),
    "livy.server.auth.ldap.timeout": ("ldap_timeout", parse_duration),
    "livy.server.auth.ldap.ca-file": ("ldap_ca_file", parse_str),
    "livy.server.auth.cache.ttl": ("auth_cache_ttl", parse_duration),
    "livy.server.auth.failures.max": ("auth_max_failures", parse_int),
    "livy.server.auth.failures.window": ("auth_failure_window", parse_duration),
    "livy.server.launch.kerberos.principal": ("launch_principal", parse_str),
    "livy.server.launch.kerberos.keytab": ("launch_keytab", parse_str),
    "livy.server.access-control.enabled": ("access_control", parse_bool),
    "livy.superusers": ("superusers", parse_list),
    "livy.server.access-control.allowed-users": ("allowed_users", parse_list),
    "livy.server.access-control.view-users": ("view_users", parse_list),
    "livy.server.access-control.modify-users": ("modify_users", parse_list),
    "livy.impersonation.enabled": ("impersonation", parse_bool),
    "livy.server.access-control.allowed-impersonators": ("allowed_impersonators", parse_list),
    "livy.server.request.max-body-bytes": ("max_body_bytes", parse_int),
    "livy.rsc.server.idle-timeout": ("repl_idle_timeout", parse_duration),
    "livy.rsc.retained-statements": ("retained_statements", parse_int),
    "livy.rsc.sql.num-rows": ("sql_num_rows", parse_int),
    "livy.rsc.statement.max-output-bytes": ("statement_max_output", parse_int),
    "livy.rsc.launcher.address": ("launcher_address", parse_str),
    "livy.server.cluster.poll-interval": ("cluster_poll_interval", parse_duration),
    "livy.server.yarn.poll-interval": ("cluster_poll_interval", parse_duration),
    "livy.server.standalone.master-ui-url": ("standalone_ui_url", parse_str),
    "livy.server.standalone.rest-url": ("standalone_rest_url", parse_str),
    "livy.server.yarn.rm-addresses": ("yarn_rm_addresses", parse_list),
    "livy.server.kubernetes.api-url": ("k8s_api_url", parse_str),
    "livy.server.kubernetes.namespace": ("k8s_namespace", parse_str),
    "livy.server.kubernetes.token-file": ("k8s_token_file", parse_str),
    "livy.server.kubernetes.ca-file": ("k8s_ca_file", parse_str),
}


def read_conf_file(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """`key = value` lines (Livy also accepts whitespace as the separator), `#` comments."""
    pairs = []
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(" ")
        if not key.strip() or not value.strip():
            raise ConfigError(f"{path}:{number}: expected 'key = value', got {raw!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def parse_set_option(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value")
    return key.strip(), value.strip()


def build_config(pairs: Iterable[tuple[str, str]]) -> ServerConfig:
    """Later pairs win. Unknown keys are warned about (a typo must not pass silently)."""
    values: dict[str, Any] = {}
    for key, text in pairs:
        if key not in KEYS:
            log.warning("unknown configuration key %r ignored; known keys are listed in the README", key)
            continue
        field, parse = KEYS[key]
        values[field] = parse(key, text)
    config = ServerConfig(**values)
    if config.recovery and not config.state_store_url:
        raise ConfigError(f"livy.server.recovery.mode = {config.recovery_mode} needs livy.server.recovery.state-store.url")
    if config.ha and config.state_store != "zookeeper":
        raise ConfigError(
            "livy.server.recovery.mode = ha needs livy.server.recovery.state-store = zookeeper: "
            "the group's election and the fence on its writes live in ZooKeeper"
        )
    if config.ha_session_timeout <= 0:
        raise ConfigError("livy.server.ha.session-timeout must be more than 0s")
    if config.ha and not config.advertised_url.startswith(("http://", "https://")):
        raise ConfigError(f"livy.server.ha.advertised-url = {config.advertised_url!r}: expected an http:// or https:// URL")
    if config.auth_type == "basic" and not config.auth_users_file:
        raise ConfigError("livy.server.auth.type = basic needs livy.server.auth.basic.users-file")
    if config.auth_type == "kerberos" and not (config.kerberos_principal and config.kerberos_keytab):
        raise ConfigError(
            "livy.server.auth.type = kerberos needs livy.server.auth.kerberos.principal and livy.server.auth.kerberos.keytab"
        )
    if config.auth_type == "ldap" and not config.ldap_url:
        raise ConfigError("livy.server.auth.type = ldap needs livy.server.auth.ldap.url")
    if config.auth_type == "ldap" and not (config.ldap_domain or config.ldap_base_dn):
        raise ConfigError("livy.server.auth.type = ldap needs livy.server.auth.ldap.base-dn (or .domain for Active Directory)")
    if bool(config.launch_principal) != bool(config.launch_keytab):
        raise ConfigError("livy.server.launch.kerberos.principal and livy.server.launch.kerberos.keytab go together")
    return config


def load_config(conf_path: str | None = None, overrides: Iterable[str] = ()) -> ServerConfig:
    pairs = read_conf_file(conf_path) if conf_path else []
    pairs += [parse_set_option(text) for text in overrides]
    return build_config(pairs)
