"""The sign-in gate every request but /version and /ready passes: cookie (Kerberos), cache, rate limit, then the check.

Order matters for the hot path: a request with the sign-in cookie and no Authorization header, or with an
Authorization header seen within the cache's lifetime, costs a hash and a dictionary lookup. Only an
unknown credential reaches the checker (bcrypt, an LDAP bind, a GSSAPI exchange), in a thread, so the event
loop keeps serving while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from airflow_provider_livy.server.auth.cache import CredentialCache, FailureLimiter
from airflow_provider_livy.server.auth.cookie import CookieSigner
from airflow_provider_livy.server.auth.refusal import Headers, Refused

log = logging.getLogger(__name__)

# Kerberos tokens with large PACs (Active Directory) reach about 12 KB in base64; more is not a credential.
MAX_AUTHORIZATION_BYTES = 16_384
# Failures that count towards the rate limit: wrong, malformed or refused credentials.
COUNTED = frozenset({400, 401})


class Checker(Protocol):
    challenge: bytes  # the WWW-Authenticate value of a 401

    def check(self, header: bytes) -> tuple[str, Headers]:
        """The user these credentials sign in, and headers for the reply; raises Refused."""


class Gate:
    def __init__(self, checker: Checker, cache_ttl: float, max_failures: int, failure_window: float, single_use: bool) -> None:
        self.checker = checker
        # A Negotiate header is good once (the replay cache refuses it again): a signed cookie stands in for it.
        # Basic credentials come with every request: they are cached instead, and no cookie is issued, so a
        # client that stops sending them is signed out, as in Livy.
        self.cookies = CookieSigner(cache_ttl) if single_use else None
        self.cache = CredentialCache(0 if single_use else cache_ttl)
        self.limiter = FailureLimiter(max_failures, failure_window)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sign-in")

    def challenge(self, msg: str = "Authentication required") -> Refused:
        return Refused(401, msg, ((b"www-authenticate", self.checker.challenge),))

    async def sign_in(self, authorization: bytes | None, cookie: bytes | None, client: str) -> tuple[str, Headers]:
        """The user, and headers to add to the reply (the mutual-auth token, the cookie); raises Refused."""
        if authorization is None:
            user = self.cookies.user(cookie) if self.cookies else None
            if user is None:
                raise self.challenge()
            return user, ()
        if len(authorization) > MAX_AUTHORIZATION_BYTES:
            raise Refused(400, f"the Authorization header is longer than {MAX_AUTHORIZATION_BYTES} bytes")
        key = CredentialCache.key(authorization)
        user = self.cache.get(key)
        if user is not None:
            return user, ()
        if wait := self.limiter.retry_after(client):
            raise Refused(
                429,
                f"too many failed sign-ins from {client}; try again in {math.ceil(wait)} s",
                ((b"retry-after", str(math.ceil(wait)).encode()),),
            )
        try:
            user, headers = await asyncio.get_running_loop().run_in_executor(self._pool, self.checker.check, authorization)
        except Refused as refusal:
            if refusal.status in COUNTED:
                self.limiter.failed(client)
            if refusal.status == 401:
                raise self.challenge(refusal.msg) from None
            raise
        except Exception as err:  # a checker's surprise is a closed door with a reason, not a 500
            log.exception("sign-in check failed")
            raise Refused(503, f"sign-in is unavailable: {type(err).__name__}") from None
        self.cache.put(key, user)
        if self.cookies:
            headers = (*headers, (b"set-cookie", self.cookies.issue(user)))
        return user, headers
