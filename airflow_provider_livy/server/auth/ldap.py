"""`livy.server.auth.type = ldap`: HTTP basic credentials checked by an LDAP simple bind as that user (ldap3).

Whom to bind as, in Livy's order: `<user>@<domain>` for Active Directory (`...ldap.domain`); else the one
entry `...user-filter` finds under the base DN (`{user}` in the filter, escaped); else `uid=<user>,<base-dn>`.
StartTLS (`...enablestarttls`) or an `ldaps://` URL keep the password off the wire. An empty password is
refused before any bind: LDAP reads it as an anonymous bind, which succeeds.
"""

from __future__ import annotations

import math
import os
import ssl

import ldap3
import ldap3.core.exceptions
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from airflow_provider_livy.server.auth.basic import parse_basic
from airflow_provider_livy.server.auth.refusal import Refused, credentials_refused
from airflow_provider_livy.server.config import ConfigError

MAX_USER_LENGTH = 256
# Result codes that say the directory, not the credentials, is the problem.
UNAVAILABLE_RESULTS = frozenset({"busy", "unavailable", "unwillingToPerform", "other", "timeLimitExceeded"})


def _reason(err: Exception) -> str:
    """ldap3's message says which address and why (refused, certificate verify failed); no credentials in it."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


class LdapChecker:
    challenge = b'Basic realm="livy"'

    def __init__(
        self,
        url: str,
        base_dn: str,
        *,
        user_filter: str = "",
        domain: str = "",
        start_tls: bool = False,
        timeout: float = 5.0,
        ca_file: str = "",
    ) -> None:
        if not url.startswith(("ldap://", "ldaps://")):
            raise ConfigError(f"livy.server.auth.ldap.url = {url!r}: expected ldap://host[:port] or ldaps://host[:port]")
        if user_filter and "{user}" not in user_filter:
            raise ConfigError("livy.server.auth.ldap.user-filter must contain {user}, e.g. (uid={user})")
        self.url = url
        self.base_dn = base_dn
        self.user_filter = user_filter
        self.domain = domain
        self.start_tls = start_tls
        self.timeout = timeout
        if ca_file and not os.access(ca_file, os.R_OK):
            raise ConfigError(f"livy.server.auth.ldap.ca-file {ca_file!r} cannot be read")
        # The directory's certificate is always verified (ldap3's default is not to): a password must not go to
        # whoever answers. CA from ...ldap.ca-file, else the system's store.
        self.tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file or None)

    def check(self, header: bytes) -> tuple[str, tuple[tuple[bytes, bytes], ...]]:
        credentials = parse_basic(header)
        if credentials is None:
            raise credentials_refused()
        user, password = credentials
        if not user or not password:
            raise credentials_refused("a user name and a password are required")
        if len(user) > MAX_USER_LENGTH or any(ord(c) < 32 for c in user):
            raise Refused(400, "the user name is too long or has control characters")
        try:
            dn = self._bind_name(user)
            if dn is None:
                raise credentials_refused()
            connection = self._open(dn, password)
            try:
                if not connection.bind():
                    self._raise_if_unavailable(connection)
                    raise credentials_refused()
            finally:
                connection.unbind()
        except ldap3.core.exceptions.LDAPStartTLSError as err:
            raise Refused(503, f"TLS with the directory at {self.url} failed: {_reason(err)}") from None
        except ldap3.core.exceptions.LDAPCommunicationError as err:
            raise Refused(503, f"the directory at {self.url} cannot be reached: {_reason(err)}") from None
        return user, ()

    def _open(self, dn: str | None = None, password: str | None = None) -> ldap3.Connection:
        """A connection, opened (and under TLS when StartTLS is on), not yet bound."""
        # A new Server each time: ldap3 remembers an address that failed once as unavailable for minutes.
        connection = ldap3.Connection(
            ldap3.Server(self.url, connect_timeout=self.timeout, get_info=ldap3.NONE, tls=self.tls),
            user=dn,
            password=password,
            authentication=ldap3.SIMPLE if dn else ldap3.ANONYMOUS,
            receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 packs it as whole seconds
            raise_exceptions=False,
            read_only=True,
        )
        connection.open()
        if self.start_tls and not self.url.startswith("ldaps://") and not connection.start_tls():
            connection.unbind()
            raise Refused(503, f"the directory at {self.url} refused StartTLS: {connection.result.get('description')}")
        return connection

    def _bind_name(self, user: str) -> str | None:
        if self.domain:
            return f"{user}@{self.domain}"
        if not self.user_filter:
            return f"uid={escape_rdn(user)},{self.base_dn}"
        query = self.user_filter.replace("{user}", escape_filter_chars(user))
        connection = self._open()
        try:
            connection.search(self.base_dn, query, attributes=[], size_limit=2)
            self._raise_if_unavailable(connection)
            return connection.entries[0].entry_dn if len(connection.entries) == 1 else None
        finally:
            connection.unbind()

    def _raise_if_unavailable(self, connection: ldap3.Connection) -> None:
        if (connection.result or {}).get("description") in UNAVAILABLE_RESULTS:
            raise Refused(503, f"the directory at {self.url} cannot answer now: {connection.result['description']}")
