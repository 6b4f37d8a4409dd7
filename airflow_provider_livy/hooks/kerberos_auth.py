"""`auth_kind = kerberos`: SPNEGO from Airflow workers, for the sync hook (requests-gssapi) and the async hook
and triggers (httpx-gssapi).

Credentials come from the worker's ticket cache (a kinit'ed worker, or Airflow's own `airflow kerberos`
ticket renewer), or from a keytab named in the connection extra (`keytab`, with `principal`), fetched into
a ticket cache of this process's memory. A Kerberos failure becomes a LivyError that says what to fix.
"""

from __future__ import annotations

import itertools
from typing import Any

import gssapi
import gssapi.exceptions
import httpx_gssapi
import httpx_gssapi.exceptions
import requests_gssapi
import requests_gssapi.exceptions

from airflow_provider_livy.hooks.connection import LivyConfigError, LivyError, LivySettings

_memory_caches = itertools.count()

# MIT Kerberos' own messages, in the words a task log reader needs.
_WORDS = (
    (
        ("no credentials cache", "no kerberos credentials", "credentials were not supplied", "no credentials were supplied"),
        "no Kerberos ticket: run kinit on the worker (or Airflow's `airflow kerberos`), or name a keytab and principal "
        "in the connection's extra",
    ),
    (
        ("clock skew",),
        "clock skew: this worker's clock and the KDC's (or the server's) differ by more than the allowed "
        "skew (5 minutes by default); synchronize the clocks",
    ),
    (
        ("not found in kerberos database", "unknown server", "wrong principal"),
        "wrong service principal: the KDC has no such service; connect by the server's host name as in its principal "
        "(HTTP/<host>@REALM), or set service_principal in the connection's extra",
    ),
    (("expired",), "the Kerberos ticket has expired: kinit again, or let a keytab renew it"),
    (("key table", "keytab"), "the keytab cannot be used for the principal: check the keytab path and the principal's name"),
    (
        ("cannot contact any kdc", "cannot find kdc", "unable to reach"),
        "no KDC answers for the realm: check krb5.conf and the network",
    ),
    (("preauthentication failed", "password incorrect"), "the KDC refused the keytab's key (preauthentication failed)"),
)


def describe(err: BaseException) -> str:
    """What went wrong, in words, followed by GSSAPI's own message."""
    chain, cause = [], err
    while cause is not None and len(chain) < 4:
        chain.append(cause.gen_message() if isinstance(cause, gssapi.exceptions.GSSError) else str(cause))
        cause = cause.__cause__ or cause.__context__
    texts = [" ".join(text.split()) for text in chain if text]
    detail = " | ".join(text for n, text in enumerate(texts) if not any(text in earlier for earlier in texts[:n]))
    lowered = detail.lower()
    for needles, words in _WORDS:
        if any(needle in lowered for needle in needles):
            return f"{words} ({detail})"
    return f"Kerberos failed: {detail}"


def credentials(settings: LivySettings) -> gssapi.Credentials | None:
    """None: the default ticket cache (KRB5CCNAME), looked up at the first exchange."""
    name = gssapi.Name(settings.principal, gssapi.NameType.kerberos_principal) if settings.principal else None
    try:
        if settings.keytab:
            store = {"client_keytab": settings.keytab, "ccache": f"MEMORY:airflow-livy-{next(_memory_caches)}"}
            return gssapi.Credentials(name=name, usage="initiate", store=store)
        return gssapi.Credentials(name=name, usage="initiate") if name is not None else None
    except gssapi.exceptions.GSSError as err:
        raise LivyConfigError(f"Kerberos credentials for the Livy connection: {describe(err)}") from None


def target_name(settings: LivySettings) -> gssapi.Name | str:
    """The server's principal: service_principal from the extra, else HTTP@<the URL's host>."""
    if settings.service_principal:
        return gssapi.Name(settings.service_principal, gssapi.NameType.kerberos_principal)
    return "HTTP"


class RequestsKerberosAuth(requests_gssapi.HTTPSPNEGOAuth):
    """OPTIONAL mutual authentication: the server's token is checked at the end of an exchange; replies on the
    server's sign-in cookie carry none."""

    def __init__(self, settings: LivySettings) -> None:
        super().__init__(mutual_authentication=requests_gssapi.OPTIONAL, target_name=target_name(settings))
        self._settings = settings
        self._looked_up = False

    def generate_request_header(self, response: Any, host: str, is_preemptive: bool = False) -> str:
        if not self._looked_up:
            self.creds, self._looked_up = credentials(self._settings), True
        try:
            return super().generate_request_header(response, host, is_preemptive)
        except (requests_gssapi.exceptions.SPNEGOExchangeError, gssapi.exceptions.GSSError) as err:
            raise LivyError(f"Kerberos sign-in to {host} failed: {describe(err)}") from None


class HttpxKerberosAuth(httpx_gssapi.HTTPSPNEGOAuth):
    """The same for httpx: httpx-gssapi would swallow the failure and leave a bare 401; it is raised in words."""

    def __init__(self, settings: LivySettings) -> None:
        super().__init__(mutual_authentication=httpx_gssapi.OPTIONAL, target_name=target_name(settings))
        self._settings = settings
        self._looked_up = False

    def set_auth_header(self, request: Any, response: Any = None) -> Any:
        if not self._looked_up:
            self.creds, self._looked_up = credentials(self._settings), True
        try:
            return super().set_auth_header(request, response)
        except (httpx_gssapi.exceptions.SPNEGOExchangeError, gssapi.exceptions.GSSError) as err:
            raise LivyError(f"Kerberos sign-in to {request.url.host} failed: {describe(err)}") from None
