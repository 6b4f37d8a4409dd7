"""The `livy-server` command: read livy.conf and --set options, recover, serve batches and sessions."""

from __future__ import annotations

import argparse
import logging
import sys

from airflow_provider_livy import __version__
from airflow_provider_livy.server.auth import build_gate
from airflow_provider_livy.server.config import ConfigError, ServerConfig, load_config
from airflow_provider_livy.server.drivers.launcher import spark_submit_problem
from airflow_provider_livy.server.drivers.logs import volatile_filesystem
from airflow_provider_livy.server.fence import Fence
from airflow_provider_livy.server.sessions.lifecycle import SessionService, family_services

log = logging.getLogger("livy-server")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    description = "Livy-compatible Spark job server: batches and interactive sessions."
    parser = argparse.ArgumentParser(prog="livy-server", description=description)
    parser.add_argument("--conf", help="a livy.conf file (key = value lines)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one key; repeatable")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=__version__)
    return parser.parse_args(argv)


def build_services(config: ServerConfig, fence: Fence | None = None) -> tuple[SessionService, SessionService]:
    """The batch and interactive services (sharing one capacity), recovered when recovery is on."""
    if not config.recovery:
        return family_services(config)
    from airflow_provider_livy.server.sessions.recovery import recover_services

    return recover_services(config, fence)


def lead_services(config: ServerConfig, fence: Fence) -> tuple[SessionService, SessionService]:
    """A group leader's services: fenced stores, clocks and launches waiting while the fence is held."""
    services = build_services(config, fence)
    for service in services:
        service.may_act = lambda: fence.armed
    return services


def serve_group(config: ServerConfig, log_level: str) -> int:
    """Recovery mode ha: listen at once, lead when elected (server.group)."""
    import uvicorn

    from airflow_provider_livy.server.api.routes import create_app
    from airflow_provider_livy.server.group import GroupFront

    front = GroupFront(config, lambda fence: create_app(*lead_services(config, fence)))
    log.info(
        "serving on http://%s:%d as %s, one of the group under /%s in ZooKeeper",
        config.host,
        config.port,
        config.advertised_url,
        config.zk_key_prefix,
    )
    uvicorn.run(
        front,
        host=config.host,
        port=config.port,
        log_level=log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.conf, args.set)
        build_gate(config)  # a keytab, users file or directory URL it cannot use stops the start, not the first request
        if config.ha:
            return serve_group(config, args.log_level)
        service, sessions = build_services(config)
    except (ConfigError, OSError) as err:
        print(f"livy-server: {err}", file=sys.stderr)
        return 2
    if config.recovery and (fstype := volatile_filesystem(service.files.directory)):
        log.warning(
            "driver logs and exit codes go to %s, on %s: a reboot loses them, and with them how drivers that ended "
            "meanwhile finished; set livy.server.log-dir (or livy.server.state-dir) to a disk",
            service.files.directory,
            fstype,
        )
    if config.cluster_mode and config.host.startswith("127.") and not config.launcher_address.startswith("127."):
        log.warning(
            "deploy mode cluster: sessions' drivers call back to %s:%d, but the server listens on %s only; "
            "set livy.server.host to an address the cluster reaches (and livy.rsc.launcher.address if it differs)",
            config.launcher_address or sessions.ui_host,
            config.port,
            config.host,
        )
    if problem := spark_submit_problem(service.local.spark_home):
        log.warning("%s: batches and sessions will end dead until this is fixed", problem)
    # Imported only now: the web stack takes ~0.5 s to import, and a recovery's purge runs meanwhile.
    import uvicorn

    from airflow_provider_livy.server.api.routes import create_app

    spark_home = service.local.spark_home
    log.info("serving on http://%s:%d (master %s, spark home %s)", config.host, config.port, config.spark_master, spark_home)
    uvicorn.run(
        create_app(service, sessions),
        host=config.host,
        port=config.port,
        log_level=args.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=10,
    )
    return 0
