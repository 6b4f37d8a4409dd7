"""GET /metrics in Prometheus text format, read from the registries at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from airflow_provider_livy.server.sessions.interactive import Interactive
from airflow_provider_livy.server.sessions.lifecycle import SessionService


class SessionCollector(Collector):
    """Batches keep their metric names (livy_sessions*, livy_batches_*); interactive sessions get
    livy_interactive_sessions{kind,state} and livy_interactive_*."""

    def __init__(self, service: SessionService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        registry = service.registry
        if service.family.interactive is not None:
            yield from self._interactive(service.family.interactive)
            return
        sessions = GaugeMetricFamily("livy_sessions", "Batch sessions held, by state", labels=["state"])
        for state, count in sorted(registry.state_counts.items()):
            sessions.add_metric([state], count)
        yield sessions
        yield GaugeMetricFamily("livy_sessions_held", "Batch sessions held in memory", value=len(registry))
        yield GaugeMetricFamily("livy_sessions_waiting", "Batches waiting for a creation slot", value=len(service.pending))
        for name, help_text in (
            ("created", "Batches accepted"),
            ("deleted", "Batches deleted by a client"),
            ("collected", "Finished batches forgotten after state-retain"),
            ("evicted", "Finished batches forgotten early at max-sessions"),
            ("ttl_killed", "Batches killed for running past livy.server.batch.ttl"),
        ):
            yield CounterMetricFamily(f"livy_batches_{name}", help_text, value=registry.counters[name])

    def _interactive(self, interactive: Interactive) -> Iterator[Metric]:
        registry = self.service.registry
        by_kind_state = GaugeMetricFamily(
            "livy_interactive_sessions", "Interactive sessions held, by kind and state", labels=["kind", "state"]
        )
        counts: dict[tuple[str, str], int] = {}
        for session in registry.sessions.values():
            kind = session.repl.kind if session.repl is not None else "unknown"
            counts[kind, session.state] = counts.get((kind, session.state), 0) + 1
        for (kind, state), count in sorted(counts.items()):
            by_kind_state.add_metric([kind, state], count)
        yield by_kind_state
        yield GaugeMetricFamily("livy_interactive_sessions_held", "Interactive sessions held in memory", value=len(registry))
        for name, help_text in (
            ("created", "Interactive sessions accepted"),
            ("deleted", "Interactive sessions deleted by a client"),
            ("collected", "Ended interactive sessions forgotten after state-retain"),
            ("evicted", "Ended interactive sessions forgotten early at max-sessions"),
        ):
            yield CounterMetricFamily(f"livy_interactive_{name}", help_text, value=registry.counters[name])
        ended = CounterMetricFamily("livy_interactive_ended", "Sessions the server ended, by clock", labels=["reason"])
        for reason, count in sorted(interactive.ended.items()):
            ended.add_metric([reason], count)
        yield ended
        for name, help_text in (
            ("statements_run", "Statements that finished (ok or error)"),
            ("statements_failed", "Statements that finished with an error output"),
            ("statements_cancelled", "Statements cancelled"),
        ):
            yield CounterMetricFamily(f"livy_interactive_{name}", help_text, value=interactive.status.counters[name])


def metrics_registry(*services: SessionService) -> CollectorRegistry:
    """A registry of our own, so several servers in one process (tests) do not collide."""
    registry = CollectorRegistry(auto_describe=True)
    for service in services:
        registry.register(SessionCollector(service))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
