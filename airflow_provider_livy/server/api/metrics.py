"""GET /metrics in Prometheus text format, read from the registry at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from airflow_provider_livy.server.sessions.lifecycle import BatchService


class BatchCollector(Collector):
    def __init__(self, service: BatchService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        registry = self.service.registry
        sessions = GaugeMetricFamily("livy_sessions", "Batch sessions held, by state", labels=["state"])
        for state, count in sorted(registry.state_counts.items()):
            sessions.add_metric([state], count)
        yield sessions
        yield GaugeMetricFamily("livy_sessions_held", "Batch sessions held in memory", value=len(registry))
        yield GaugeMetricFamily("livy_sessions_waiting", "Batches waiting for a creation slot", value=len(self.service.pending))
        for name, help_text in (
            ("created", "Batches accepted"),
            ("deleted", "Batches deleted by a client"),
            ("collected", "Finished batches forgotten after state-retain"),
            ("evicted", "Finished batches forgotten early at max-sessions"),
            ("ttl_killed", "Batches killed for running past livy.server.batch.ttl"),
        ):
            yield CounterMetricFamily(f"livy_batches_{name}", help_text, value=registry.counters[name])


def metrics_registry(service: BatchService) -> CollectorRegistry:
    """A registry of our own, so several servers in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(BatchCollector(service))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
