"""The sign-in gate's own parts: the cookie, the credential cache and the failure limit (no server needed)."""

from __future__ import annotations

import base64

from airflow_provider_livy.server.auth.cache import CredentialCache, FailureLimiter
from airflow_provider_livy.server.auth.cookie import CookieSigner


def value_of(set_cookie: bytes) -> bytes:
    return set_cookie.split(b";")[0]


def test_the_cookie_signs_in_its_user_until_it_expires_and_nothing_forged() -> None:
    signer = CookieSigner(ttl=60)
    issued = signer.issue("alice", now=1000)
    assert b"HttpOnly" in issued and b"SameSite=Strict" in issued and b"Max-Age=60" in issued
    cookie = value_of(issued)
    assert signer.user(b"theme=dark; " + cookie, now=1010) == "alice"
    assert signer.user(cookie, now=1010) == "alice", "the second look is the remembered one"
    assert signer.user(cookie, now=1061) is None, "expired, remembered or not"
    payload, _, mac = cookie.partition(b"=")[2].rpartition(b".")
    bob = base64.urlsafe_b64encode(b"bob").rstrip(b"=")
    forged = b"livy.auth=" + bob + payload[payload.index(b".") :] + b"." + mac
    assert signer.user(forged, now=1010) is None, "another user's name under alice's signature"
    assert signer.user(b"livy.auth=" + payload + b".AAAA", now=1010) is None
    assert signer.user(b"livy.auth=garbage", now=1010) is None
    assert CookieSigner(ttl=60).user(cookie, now=1010) is None, "a restarted server's key signs nobody in"


def test_the_credential_cache_is_bounded_in_time_and_size() -> None:
    cache = CredentialCache(ttl=10, size=2)
    for n in range(3):
        cache.put(CredentialCache.key(f"header {n}".encode()), f"user{n}", now=0)
    assert cache.get(CredentialCache.key(b"header 0"), now=1) is None, "the oldest went first"
    assert cache.get(CredentialCache.key(b"header 2"), now=1) == "user2"
    assert cache.get(CredentialCache.key(b"header 2"), now=11) is None
    off = CredentialCache(ttl=0)
    off.put(b"k", "alice", now=0)
    assert off.get(b"k", now=0) is None


def test_failures_are_limited_per_address_in_a_sliding_window() -> None:
    limiter = FailureLimiter(limit=3, window=60)
    for t in (0, 10, 20):
        assert limiter.retry_after("10.0.0.1", now=t) == 0
        limiter.failed("10.0.0.1", now=t)
    assert limiter.retry_after("10.0.0.1", now=30) == 30, "until the first of the three leaves the window"
    assert limiter.retry_after("10.0.0.2", now=30) == 0, "another address is not affected"
    assert limiter.retry_after("10.0.0.1", now=61) == 0
