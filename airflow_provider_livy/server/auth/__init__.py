"""Who is calling: the sign-in types of `livy.server.auth.type` (basic, kerberos, ldap) behind one gate.

- `gate`: cookie, credential cache and rate limit in front of the checker.
- `basic`, `kerberos`, `ldap`: one checker each; `name_rules`: Kerberos principals to user names.
"""

from __future__ import annotations

import functools

from airflow_provider_livy.server.auth.gate import Checker, Gate
from airflow_provider_livy.server.config import ServerConfig


def build_checker(config: ServerConfig) -> Checker:
    """Each type's library is imported only by servers that use it."""
    if config.auth_type == "basic":
        from airflow_provider_livy.server.auth.basic import BasicChecker, read_users_file

        return BasicChecker(read_users_file(config.auth_users_file))
    if config.auth_type == "kerberos":
        from airflow_provider_livy.server.auth.kerberos import KerberosChecker

        return KerberosChecker(config.kerberos_principal, config.kerberos_keytab, config.kerberos_name_rules, config.host)
    from airflow_provider_livy.server.auth.ldap import LdapChecker

    return LdapChecker(
        config.ldap_url,
        config.ldap_base_dn,
        user_filter=config.ldap_user_filter,
        domain=config.ldap_domain,
        start_tls=config.ldap_start_tls,
        timeout=config.ldap_timeout,
        ca_file=config.ldap_ca_file,
    )


@functools.cache
def build_gate(config: ServerConfig) -> Gate | None:
    """One gate per configuration: the command builds it at start-up (a bad keytab or users file stops the
    start), the middleware finds the same one. None when livy.server.auth.type = none."""
    if config.auth_type == "none":
        return None
    return Gate(
        build_checker(config),
        config.auth_cache_ttl,
        config.auth_max_failures,
        config.auth_failure_window,
        single_use=config.auth_type == "kerberos",
    )
