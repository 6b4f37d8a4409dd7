"""How a sign-in check says no: an HTTP status, Livy's {"msg": ...} text, and headers to send."""

from __future__ import annotations

Headers = tuple[tuple[bytes, bytes], ...]


class Refused(Exception):
    """400/401: the client's credentials; 403: a user this server does not know by that name; 429: too many
    failures from one address; 503: the directory or the server's Kerberos setup cannot answer now."""

    def __init__(self, status: int, msg: str, headers: Headers = ()) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.headers = headers


def credentials_refused(msg: str = "Authentication required") -> Refused:
    return Refused(401, msg)
