"""Runs unmodified third-party Livy clients against a server; executed by the client virtualenv's Python.

Usage: python clients.py sparkmagic|sparkmagic-scala|pylivy|sparkmagic-kerberos|pylivy-kerberos URL.
Prints one JSON object with what the client saw, for tests/test_session_clients.py to check.
"""

from __future__ import annotations

import json
import sys
from typing import Any


class Display:
    """sparkmagic's IPythonDisplay, without a notebook: it records what would be shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.shown.append(f"{name}: {args!r}"[:500])


def run_sparkmagic(url: str) -> dict[str, Any]:
    from sparkmagic.livyclientlib.command import Command
    from sparkmagic.livyclientlib.endpoint import Endpoint
    from sparkmagic.livyclientlib.sparkcontroller import SparkController
    from sparkmagic.livyclientlib.sqlquery import SQLQuery
    from sparkmagic.utils.constants import SESSION_KIND_PYSPARK

    display = Display()
    controller = SparkController(display)
    endpoint = Endpoint(url, None)  # what sparkmagic's auth set-up gives for its 'None' authentication
    properties = {"kind": SESSION_KIND_PYSPARK, "heartbeatTimeoutInSecond": 60}
    controller.add_session("clients", endpoint, False, properties)
    session = controller.get_session_by_name_or_default("clients")
    ok = controller.run_command(Command("numbers = list(range(5))\nsum(numbers)"), "clients")
    failed = controller.run_command(Command("numbers[10]"), "clients")
    frame = controller.run_sqlquery(SQLQuery("SELECT 1 AS one, 'a' AS letter"), "clients")
    session_id = session.id
    controller.delete_session_by_name("clients")
    return {
        "session_id": session_id,
        "ok": [ok[0], str(ok[1]), ok[2]],
        "failed": [failed[0], str(failed[1]), failed[2]],
        "sql": frame.to_dict(orient="records"),
    }


def run_sparkmagic_scala(url: str) -> dict[str, Any]:
    """A `spark` (Scala) session, as sparkmagic's default %%spark cells use it."""
    from sparkmagic.livyclientlib.command import Command
    from sparkmagic.livyclientlib.endpoint import Endpoint
    from sparkmagic.livyclientlib.sparkcontroller import SparkController
    from sparkmagic.utils.constants import SESSION_KIND_SPARK

    controller = SparkController(Display())
    controller.add_session("scala", Endpoint(url, None), False, {"kind": SESSION_KIND_SPARK})
    session_id = controller.get_session_by_name_or_default("scala").id
    ok = controller.run_command(Command("val x = 40 + 2\nspark.range(10).count()"), "scala")
    failed = controller.run_command(Command('val y: Int = "s"'), "scala")
    controller.delete_session_by_name("scala")
    return {"session_id": session_id, "ok": [ok[0], str(ok[1]), ok[2]], "failed": [failed[0], str(failed[1]), failed[2]]}


def run_pylivy(url: str) -> dict[str, Any]:
    from livy import LivySession, SessionKind

    result: dict[str, Any] = {}
    with LivySession.create(url, kind=SessionKind.PYSPARK) as session:
        result["session_id"] = session.session_id
        session.run("df = spark.createDataFrame([(1, 'a'), (2, 'b')], ['n', 'letter'])")
        result["run"] = session.run("print(df.count())").text
        result["download"] = session.download("df").to_dict(orient="records")
    with LivySession.create(url, kind=SessionKind.SQL) as sql:
        result["sql_session_id"] = sql.session_id
        result["download_sql"] = sql.download_sql("SELECT 2 AS two, 'b' AS letter").to_dict(orient="records")
    return result


def run_sparkmagic_kerberos(url: str) -> dict[str, Any]:
    """sparkmagic's "auth": "Kerberos" (requests-kerberos, mutual authentication REQUIRED), the worker's ticket cache."""
    from sparkmagic.auth.kerberos import Kerberos
    from sparkmagic.livyclientlib.command import Command
    from sparkmagic.livyclientlib.endpoint import Endpoint
    from sparkmagic.livyclientlib.sparkcontroller import SparkController
    from sparkmagic.utils.constants import SESSION_KIND_PYSPARK

    controller = SparkController(Display())
    controller.add_session("kerberos", Endpoint(url, Kerberos()), False, {"kind": SESSION_KIND_PYSPARK})
    session_id = controller.get_session_by_name_or_default("kerberos").id
    ok = controller.run_command(Command("6 * 7"), "kerberos")
    controller.delete_session_by_name("kerberos")
    return {"session_id": session_id, "ok": [ok[0], str(ok[1]), ok[2]]}


def run_pylivy_kerberos(url: str) -> dict[str, Any]:
    """pylivy with requests-gssapi's HTTPSPNEGOAuth(), as its README shows for Kerberos."""
    from livy import LivySession, SessionKind
    from requests_gssapi import HTTPSPNEGOAuth

    with LivySession.create(url, kind=SessionKind.PYSPARK, auth=HTTPSPNEGOAuth()) as session:
        return {"session_id": session.session_id, "run": session.run("print(6 * 7)").text}


if __name__ == "__main__":
    client, server_url = sys.argv[1], sys.argv[2]
    runner = {
        "sparkmagic": run_sparkmagic,
        "sparkmagic-scala": run_sparkmagic_scala,
        "pylivy": run_pylivy,
        "sparkmagic-kerberos": run_sparkmagic_kerberos,
        "pylivy-kerberos": run_pylivy_kerberos,
    }[client]
    print(json.dumps(runner(server_url), default=str))
