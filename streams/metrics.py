"""The worker's Prometheus metrics, in a registry the caller passes in (a fresh one per test).

Names follow the Prometheus conventions: one `accessdrift_` prefix, base units in the name,
`_total` counters. Labels are bounded (closed vocabularies, stream names, partitions); never an
identity, a finding or an entitlement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from accessdrift.models.clock import US_PER_S
from accessdrift.models.findings import FindingRecord, ObligationEnded, Record
from accessdrift.models.policy import Policy
from accessdrift.models.state import Admission
from accessdrift.streams.census import Census

#: What became of an input event: the engine's admissions, or refused at ingest.
EventOutcome = Admission | Literal["deadlettered", "implausible"]
#: Buckets every time-to-revoke histogram has, besides the policy's own windows.
STANDARD_BUCKETS_S: Final = (60, 300, 900, 3600, 4 * 3600, 86_400, 7 * 86_400, 30 * 86_400)


def revoke_buckets_s(policy: Policy) -> tuple[float, ...]:
    """Histogram bounds: every control window of the policy, so that the share of obligations
    met within a window is an exact bucket, and a standard grid around them."""
    return tuple(float(b) for b in sorted({*policy.windows_s(), *STANDARD_BUCKETS_S}))


class _CensusCollector(Collector):
    """Gauges read from the census at scrape time (what is open now)."""

    def __init__(self, census: Census) -> None:
        self._census = census

    def collect(self) -> Iterator[Metric]:
        census = self._census
        open_findings = GaugeMetricFamily(
            "accessdrift_findings_open",
            "Findings open now on this worker's partitions, by trigger and severity.",
            labels=["trigger", "severity"],
        )
        counts: dict[tuple[str, str], int] = {}
        for record in census.open.values():
            key = (record.trigger, record.severity)
            counts[key] = counts.get(key, 0) + 1
        for (trigger, severity), count in sorted(counts.items()):
            open_findings.add_metric([trigger, severity], count)
        yield open_findings
        yield GaugeMetricFamily(
            "accessdrift_obligations_pending",
            "Obligations not judged yet (their deadline plus grace has not passed).",
            value=max(0, census.live_total - len(census.open)),
        )
        yield GaugeMetricFamily(
            "accessdrift_oldest_overdue_obligation_age_seconds",
            "How far past its deadline the oldest open finding is, by the worker's clock.",
            value=census.oldest_overdue_age_s(),
        )
        yield GaugeMetricFamily(
            "accessdrift_exceptions_active",
            "Approved access exceptions in force now (control debt).",
            value=census.exceptions_active,
        )
        yield CounterMetricFamily(
            "accessdrift_exceptions_expired",
            "Access exceptions that reached their expiry while this worker owned them.",
            value=census.exceptions_expired,
        )


class _InputCollector(Collector):
    """Per input stream: the event-time watermark of the partitions this worker reads."""

    def __init__(self, watermarks: Callable[[], dict[str, int]]) -> None:
        self._watermarks = watermarks

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "accessdrift_input_watermark_timestamp_seconds",
            "Event time every partition of the stream this worker reads has reached (the "
            "minimum over them of the newest event read), Unix time.",
            labels=["stream"],
        )
        for stream, at_us in sorted(self._watermarks().items()):
            family.add_metric([stream], at_us / US_PER_S)
        yield family


class WorkerMetrics:
    """What a worker counts and shows."""

    def __init__(
        self,
        registry: CollectorRegistry,
        policy: Policy,
        census: Census,
        watermarks: Callable[[], dict[str, int]],
    ) -> None:
        self.time_to_revoke = Histogram(
            "accessdrift_time_to_revoke_seconds",
            "Time from a trigger to the access change that met its obligation, observed once per "
            "obligation met (on time or late); bucket bounds include every policy window.",
            ["trigger", "identity_kind", "privileged"],
            buckets=revoke_buckets_s(policy),
            registry=registry,
        )
        self.ended = Counter(
            "accessdrift_obligations_ended",
            "Obligations that reached their end, by trigger, outcome (on_time, late, "
            "withdrawn, exception_expired) and whether the access was privileged.",
            ["trigger", "outcome", "privileged"],
            registry=registry,
        )
        self.opened = Counter(
            "accessdrift_findings_opened",
            "Findings opened, by kind, trigger and severity.",
            ["kind", "trigger", "severity"],
            registry=registry,
        )
        self.resolved = Counter(
            "accessdrift_findings_resolved",
            "Findings resolved (the access change landed late), by kind, trigger and severity.",
            ["kind", "trigger", "severity"],
            registry=registry,
        )
        self.events = Counter(
            "accessdrift_events",
            "Input events consumed, by stream and outcome: applied, repeat, stale (changed "
            "nothing), deadlettered (broke the contract), implausible (dated too far ahead).",
            ["stream", "outcome"],
            registry=registry,
        )
        self.deadletter = Counter(
            "accessdrift_deadletter_records",
            "Input records sent to the dead-letter topic, by the topic they came from.",
            ["topic"],
            registry=registry,
        )
        self.last_event = Gauge(
            "accessdrift_input_last_event_timestamp_seconds",
            "When this worker last read an event of the stream (Unix time): a silent source "
            "shows as a growing `time() - this`.",
            ["stream"],
            registry=registry,
        )
        self.event_lag = Gauge(
            "accessdrift_input_event_lag_seconds",
            "How long after it happened the stream's latest event was read.",
            ["stream"],
            registry=registry,
        )
        self.clock_lag = Gauge(
            "accessdrift_clock_lag_seconds",
            "How far the clock deadlines fire against is behind wall time, per identity-inbox "
            "partition (input still unread, or in event-clock mode the age of the history).",
            ["partition"],
            registry=registry,
        )
        registry.register(_CensusCollector(census))
        registry.register(_InputCollector(watermarks))
        # Children by label values: `labels()` costs several times an update, and these are
        # updated for every event.
        self._events: dict[tuple[str, str], Any] = {}
        self._read: dict[str, tuple[Any, Any]] = {}

    def revocations(self) -> list[Metric]:
        """The time-to-revoke histogram and the ended-obligations counter, as collected."""
        return [*self.time_to_revoke.collect(), *self.ended.collect()]

    def count_event(self, stream: str, outcome: EventOutcome) -> None:
        child = self._events.get((stream, outcome))
        if child is None:
            child = self._events[(stream, outcome)] = self.events.labels(stream, outcome)
        child.inc()

    def read_event(self, stream: str, occurred_at_us: int, wall_us: int) -> None:
        children = self._read.get(stream)
        if children is None:
            children = self._read[stream] = (
                self.last_event.labels(stream),
                self.event_lag.labels(stream),
            )
        last_event, event_lag = children
        last_event.set(wall_us / US_PER_S)
        event_lag.set(max(0, wall_us - occurred_at_us) / US_PER_S)

    def count_step(self, records: list[Record], ended: list[ObligationEnded]) -> None:
        """Count what one engine step reported."""
        for record in records:
            if isinstance(record, FindingRecord):
                counter = self.opened if record.status == "open" else self.resolved
                counter.labels(
                    kind=record.kind, trigger=record.trigger, severity=record.severity
                ).inc()
        for item in ended:
            privileged = "true" if item.privileged else "false"
            self.ended.labels(
                trigger=item.trigger, outcome=item.outcome, privileged=privileged
            ).inc()
            if item.time_to_revoke_us is not None:
                self.time_to_revoke.labels(
                    trigger=item.trigger,
                    identity_kind=item.identity_kind,
                    privileged=privileged,
                ).observe(item.time_to_revoke_us / US_PER_S)
