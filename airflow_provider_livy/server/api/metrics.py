"""GET /metrics in Prometheus text format, read from the registries at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from airflow_provider_livy.server.sessions.lifecycle import SessionService


class SessionCollector(Collector):
    """One family's metrics, the set its family contributes (sessions/families.py)."""

    def __init__(self, service: SessionService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        yield from self.service.family.metrics(waiting=len(self.service.launches.pending))


def metrics_registry(*services: SessionService) -> CollectorRegistry:
    """A registry of our own, so several servers in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=True)
    for service in services:
        registry.register(SessionCollector(service))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
