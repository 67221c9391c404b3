"""The worker's metrics, through a fresh registry: names with units, bounded labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from accessdrift.models.findings import ObligationEnded
from accessdrift.streams.metrics import WorkerMetrics


def _ended(outcome: str) -> ObligationEnded:
    return ObligationEnded(
        finding_id="f",
        identity_id="alice",
        identity_kind="human",
        trigger="leaver",
        system="github",
        entitlement="admin",
        entitlement_kind="role",
        privileged=True,
        severity="critical",
        triggered_at_us=0,
        deadline_us=1,
        ended_at_us=1,
        outcome=outcome,  # type: ignore[arg-type]
        resolution="revoked",
        exception_id=None,
        time_to_revoke_us=1,
    )


def test_ended_obligations_are_counted_by_trigger_and_outcome() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)

    metrics.count_ended([_ended("on_time"), _ended("on_time"), _ended("late")])
    metrics.clock_lag.labels(partition="3").set(1.5)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("accessdrift_obligations_ended_total", trigger="leaver", outcome="on_time") == 2
    assert value("accessdrift_obligations_ended_total", trigger="leaver", outcome="late") == 1
    assert value("accessdrift_clock_lag_seconds", partition="3") == 1.5
    assert value("accessdrift_deadletter_records_total", topic="x") is None
