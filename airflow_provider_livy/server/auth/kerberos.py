"""`livy.server.auth.type = kerberos`: SPNEGO (RFC 4559) with python-gssapi, as Livy's Kerberos filter.

A request without credentials gets `401` with `WWW-Authenticate: Negotiate`; the client answers with
`Authorization: Negotiate <token>`; a token accepted with this server's keytab signs in the principal it
names, mapped to a user by the name rules, and the reply carries the mutual-authentication token. Accepting
a token needs only the keytab, never the KDC: a keytab that cannot be read at request time is a `503`.
"""

from __future__ import annotations

import base64
import binascii
import os

import gssapi
import gssapi.exceptions

from airflow_provider_livy.server.auth import name_rules
from airflow_provider_livy.server.auth.principals import server_principal, split_principal
from airflow_provider_livy.server.auth.refusal import Refused, credentials_refused
from airflow_provider_livy.server.config import ConfigError


def parse_negotiate(header: bytes) -> bytes:
    scheme, _, token = header.partition(b" ")
    if scheme.lower() != b"negotiate":
        raise credentials_refused()
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except binascii.Error:
        raise Refused(400, "the Negotiate token is not base64") from None
    if not decoded:
        raise Refused(400, "the Negotiate token is empty")
    return decoded


class KerberosChecker:
    challenge = b"Negotiate"

    def __init__(self, principal: str, keytab: str, rules: str, host: str) -> None:
        self.principal = server_principal(principal, host)
        self.keytab = keytab
        parts = split_principal(self.principal)
        if parts is None:
            raise ConfigError(f"livy.server.auth.kerberos.principal {self.principal!r} needs a realm (service/host@REALM)")
        self.default_realm = parts[0]
        try:
            self.rules = name_rules.parse_rules(rules)
        except name_rules.NameRuleError as err:
            raise ConfigError(f"livy.server.auth.kerberos.name-rules: {err}") from None
        if not os.access(keytab, os.R_OK):
            raise ConfigError("livy.server.auth.kerberos.keytab cannot be read by the server")
        try:
            self.credentials = gssapi.Credentials(
                name=gssapi.Name(self.principal, gssapi.NameType.kerberos_principal),
                usage="accept",
                store={"keytab": keytab},
            )
            self.credentials.inquire()  # a principal missing from the keytab fails here, not at the first request
        except gssapi.exceptions.GSSError as err:
            raise ConfigError(f"no key for {self.principal} in livy.server.auth.kerberos.keytab: {self._words(err)}") from None

    def _words(self, err: gssapi.exceptions.GSSError) -> str:
        """GSSAPI's own message, without the keytab's path (it names it in some errors)."""
        return " ".join(err.gen_message().split()).replace(self.keytab, "<keytab>")

    def check(self, header: bytes) -> tuple[str, tuple[tuple[bytes, bytes], ...]]:
        token = parse_negotiate(header)
        context = gssapi.SecurityContext(creds=self.credentials, usage="accept")
        try:  # python-gssapi may raise a failed step's error at the next attribute read: both inside
            reply = context.step(token)
            complete = context.complete
            principal = str(context.initiator_name) if complete else ""
        except gssapi.exceptions.GSSError as err:
            if not os.access(self.keytab, os.R_OK):
                raise Refused(503, "Kerberos sign-in is unavailable: the server's keytab cannot be read") from None
            raise credentials_refused(f"Kerberos token refused: {self._words(err)}") from None
        if not complete:
            raise credentials_refused("the Kerberos exchange needs more than one round trip, which this server does not do")
        user = name_rules.short_name(principal, self.rules, self.default_realm)
        if user is None:
            raise Refused(403, f"no rule of livy.server.auth.kerberos.name-rules maps {principal!r} to a user")
        headers = ((b"www-authenticate", b"Negotiate " + base64.b64encode(reply)),) if reply else ()
        return user, headers
