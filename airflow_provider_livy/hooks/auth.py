"""Which HTTP auth a Livy connection asks for (`auth_kind`), built for requests (the sync and SQL hooks) or for
httpx (the async hook, and so the triggers): one choice, two HTTP libraries."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from airflow_provider_livy.hooks.connection import LivyConfigError, LivySettings


def requests_auth(settings: LivySettings) -> Any:
    """The sync hook's requests auth for the connection's auth_kind (None: send no credentials)."""
    import requests.auth

    if settings.auth_kind == "class" and settings.auth_class:
        return load_auth_class(settings.auth_class, requests.auth.AuthBase, settings.auth_kwargs)
    if settings.auth_kind == "kerberos":
        from airflow_provider_livy.hooks.kerberos_auth import RequestsKerberosAuth

        return RequestsKerberosAuth(settings)
    if settings.auth_kind == "basic" and settings.login:
        return requests.auth.HTTPBasicAuth(settings.login, settings.password or "")
    return None


def httpx_auth(settings: LivySettings) -> Any:
    """The async hook's (and so the triggers') httpx auth, the same choice as requests_auth."""
    import httpx

    if settings.auth_kind == "class" and settings.auth_class:
        return load_auth_class(settings.auth_class, httpx.Auth, settings.auth_kwargs)
    if settings.auth_kind == "kerberos":
        from airflow_provider_livy.hooks.kerberos_auth import HttpxKerberosAuth

        return HttpxKerberosAuth(settings)
    if settings.auth_kind == "basic" and settings.login:
        return httpx.BasicAuth(settings.login, settings.password or "")
    return None


def load_auth_class(dotted: str, base: type, kwargs: Mapping[str, Any]) -> Any:
    """Instantiate the auth class a connection names, checking it fits the HTTP library in use."""
    module_name, _, class_name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise LivyConfigError(f"cannot import auth class {dotted!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise LivyConfigError(f"auth class {dotted!r} is not a {base.__module__}.{base.__qualname__} subclass")
    return cls(**kwargs)
