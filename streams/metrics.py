"""The worker's Prometheus metrics, in a registry the caller passes in (a fresh one per test)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from accessdrift.models.findings import ObligationEnded


class WorkerMetrics:
    """What a worker counts. Labels are bounded: topics, partitions and closed vocabularies."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deadletter = Counter(
            "accessdrift_deadletter_records",
            "Input records sent to the dead-letter topic, by the topic they came from.",
            ["topic"],
            registry=registry,
        )
        self.ended = Counter(
            "accessdrift_obligations_ended",
            "Obligations that reached their end, by trigger and outcome (on_time, late, "
            "withdrawn, exception_expired).",
            ["trigger", "outcome"],
            registry=registry,
        )
        self.clock_lag = Gauge(
            "accessdrift_clock_lag_seconds",
            "How far the clock deadlines fire against is behind wall time, per identity-inbox "
            "partition (input still unread, or in event-clock mode the age of the history).",
            ["partition"],
            registry=registry,
        )

    def count_ended(self, ended: list[ObligationEnded]) -> None:
        for item in ended:
            self.ended.labels(trigger=item.trigger, outcome=item.outcome).inc()
