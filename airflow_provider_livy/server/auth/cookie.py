"""The sign-in cookie: after a successful sign-in the server sets a signed `livy.auth` cookie (as Hadoop's
`hadoop.auth`), and a request that carries it and no Authorization header is that user until it expires.

This is what keeps SPNEGO cheap: a Kerberos token is good for one request (the replay cache refuses it twice),
so without the cookie every poll would be a 401 and a new GSSAPI exchange. The key is made at start-up and
never leaves the process; a restart signs everyone out, which only costs each client one exchange.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

NAME = "livy.auth"
_PREFIX = NAME.encode() + b"="


class CookieSigner:
    """Issues and checks the cookie. A value checked once is remembered (at most `size`, oldest first) until
    it expires, so a poller's request costs a dictionary lookup, not an HMAC and two base64 decodings."""

    def __init__(self, ttl: float, secure: bool = False, size: int = 10_000) -> None:
        self.ttl = ttl
        self.secure = secure
        self.size = size
        self._key = secrets.token_bytes(32)
        self._checked: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def _mac(self, payload: bytes) -> bytes:
        return base64.urlsafe_b64encode(hmac.digest(self._key, payload, hashlib.sha256)).rstrip(b"=")

    def issue(self, user: str, now: float | None = None) -> bytes:
        """The Set-Cookie header value for this user."""
        expires = int((time.time() if now is None else now) + self.ttl)
        payload = base64.urlsafe_b64encode(user.encode()).rstrip(b"=") + b"." + str(expires).encode()
        attributes = f"; Path=/; Max-Age={int(self.ttl)}; HttpOnly; SameSite=Strict" + ("; Secure" if self.secure else "")
        return _PREFIX + payload + b"." + self._mac(payload) + attributes.encode()

    def user(self, cookie_header: bytes | None, now: float | None = None) -> str | None:
        """The user a request's Cookie header signs in, or None (absent, forged, expired, malformed)."""
        if not cookie_header or _PREFIX not in cookie_header:
            return None
        now = time.time() if now is None else now
        for part in cookie_header.split(b";"):
            crumb = part.strip()
            if crumb.startswith(_PREFIX):
                value = crumb[len(_PREFIX) :]
                checked = self._checked.get(value)
                if checked is not None and checked[1] > now:
                    return checked[0]
                return self._read(value, now)
        return None

    def _read(self, value: bytes, now: float) -> str | None:
        payload, _, mac = value.rpartition(b".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        encoded, _, expires = payload.partition(b".")
        try:
            expires_at = int(expires)
            if expires_at <= now:
                return None
            user = base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        self._checked[value] = (user, expires_at)
        while len(self._checked) > self.size:
            self._checked.popitem(last=False)
        return user
