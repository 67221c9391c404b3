"""The worker's metrics through a fresh registry: after a scenario, the time-to-revoke histogram's
counts and buckets, the findings counters and the census gauges are exactly what it implies."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from accessdrift.models.messages import EntitlementChange, ExceptionGrant, StatusChange
from accessdrift.models.policy import LeaverPolicy, Policy
from accessdrift.streams.census import Census
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.metrics import WorkerMetrics, revoke_buckets_s

S = 1_000_000
H = 3600 * S
T0 = 1_767_600_000 * S
#: Privileged leavers must lose access within 2 h, others within 5 h.
POLICY = Policy(leaver=LeaverPolicy(window="5h", privileged_window="2h"))


def _grant(
    identity: str, event: str, at: int, entitlement: str, privileged: bool, action: str = "revoked"
) -> EntitlementChange:
    return EntitlementChange(
        identity,
        event,
        at,
        "github",
        entitlement,
        action,
        "role",
        privileged,
        None,
        False,  # type: ignore[arg-type]
    )


def _scenario() -> tuple[CollectorRegistry, Census]:
    """Four leavers, each holding a privileged and an ordinary role, revoked at different times;
    a fifth keeps both roles under an exception; the clock ends at T0 + 12 h."""
    registry = CollectorRegistry()
    census = Census()
    metrics = WorkerMetrics(registry, POLICY, census, lambda: {"identity.status": T0 + 12 * H})
    engine = Engine(POLICY)
    #: (identity, hours after termination the privileged role goes, the ordinary one goes)
    plan = [("u1", 1, 1), ("u2", 2, 5), ("u3", 3, 6), ("u4", None, 4), ("u5", None, None)]

    def keep(step: Step, message: object = None) -> Step:
        metrics.count_step(step.records, step.ended)
        census.track(step, message)  # type: ignore[arg-type]
        return step

    states = {}
    for identity, _, _ in plan:
        # The engine updates a state in place; a step's state is the same object.
        state = states[identity] = engine.new_state(identity)
        messages: list[object] = [
            StatusChange(identity, f"{identity}-a", T0 - H, "active", "human", None, None),
            _grant(identity, f"{identity}-g1", T0 - H, "admin", True, "granted"),
            _grant(identity, f"{identity}-g2", T0 - H, "user", False, "granted"),
            StatusChange(identity, f"{identity}-t", T0, "terminated", "human", None, None),
        ]
        if identity == "u5":
            messages.append(
                ExceptionGrant(identity, "x5", T0, "EXC-5", None, None, T0 + 24 * H, "r", "b")
            )
        for message in messages:
            keep(engine.apply(state, message, T0), message)  # type: ignore[arg-type]
    for hour in range(1, 13):
        now_us = T0 + hour * H
        for identity, admin_h, user_h in plan:
            state = states[identity]
            for role, privileged, at_h in (("admin", True, admin_h), ("user", False, user_h)):
                if at_h == hour:
                    revoke = _grant(identity, f"{identity}-r-{role}", now_us, role, privileged)
                    keep(engine.apply(state, revoke, now_us), revoke)
            keep(engine.advance(state, now_us))
        census.advance(now_us)
    return registry, census


def test_time_to_revoke_buckets_are_exact_on_the_policy_windows() -> None:
    registry, _ = _scenario()

    def bucket(privileged: str, le: float | str) -> float | None:
        return registry.get_sample_value(
            "accessdrift_time_to_revoke_seconds_bucket",
            {"trigger": "leaver", "identity_kind": "human", "privileged": privileged,
             "le": str(float(le)) if le != "+Inf" else "+Inf"},
        )  # fmt: skip

    # Privileged roles revoked after 1 h, 2 h (exactly the window) and 3 h; u4's and u5's never.
    assert bucket("true", 3600) == 1
    assert bucket("true", 7200) == 2, "revoked exactly at the window counts as within it"
    assert bucket("true", "+Inf") == 3
    assert (
        registry.get_sample_value(
            "accessdrift_time_to_revoke_seconds_sum",
            {"trigger": "leaver", "identity_kind": "human", "privileged": "true"},
        )
        == (1 + 2 + 3) * 3600
    )
    # Ordinary roles revoked after 1, 5 (the window), 6 and 4 hours.
    assert bucket("false", 14400) == 2
    assert bucket("false", 18000) == 3
    assert bucket("false", "+Inf") == 4


def test_findings_and_obligations_are_counted_by_trigger_outcome_and_severity() -> None:
    registry, census = _scenario()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    def ended(outcome: str, privileged: str) -> float | None:
        name = "accessdrift_obligations_ended_total"
        return value(name, trigger="leaver", outcome=outcome, privileged=privileged)

    # On time: u1 both, u2 both, u4 user. Late: u3 both (3 h > 2 h, 6 h > 5 h).
    assert ended("on_time", "true") == 2
    assert ended("on_time", "false") == 3
    assert ended("late", "true") == 1
    assert ended("late", "false") == 1
    opened = "accessdrift_findings_opened_total"
    assert value(opened, kind="access_not_revoked", trigger="leaver", severity="critical") == 2
    assert value(opened, kind="access_not_revoked", trigger="leaver", severity="high") == 1
    resolved = "accessdrift_findings_resolved_total"
    assert value(resolved, kind="access_not_revoked", trigger="leaver", severity="critical") == 1
    assert value(resolved, kind="access_not_revoked", trigger="leaver", severity="high") == 1
    # Open now: u4's admin (due T0 + 2 h, so 10 h overdue at T0 + 12 h). u5's two are deferred
    # by the exception until T0 + 24 h: pending.
    assert value("accessdrift_findings_open", trigger="leaver", severity="critical") == 1
    assert value("accessdrift_obligations_pending") == 2
    assert value("accessdrift_oldest_overdue_obligation_age_seconds") == 10 * 3600
    assert value("accessdrift_exceptions_active") == 1
    assert value("accessdrift_exceptions_expired_total") == 0
    assert value("accessdrift_input_watermark_timestamp_seconds", stream="identity.status") == (
        (T0 + 12 * H) / S
    )
    assert len(census.open) == 1


def test_an_exception_expiring_leaves_the_active_count_and_is_counted() -> None:
    census = Census()
    registry = CollectorRegistry()
    WorkerMetrics(registry, POLICY, census, dict)
    engine = Engine(POLICY)
    waiver = ExceptionGrant("u", "x", T0, "EXC", None, None, T0 + H, "r", "b")
    census.track(engine.apply(engine.new_state("u"), waiver, T0), waiver)

    assert registry.get_sample_value("accessdrift_exceptions_active") == 1
    census.advance(T0 + H)
    assert registry.get_sample_value("accessdrift_exceptions_active") == 0
    assert registry.get_sample_value("accessdrift_exceptions_expired_total") == 1


def test_bucket_bounds_hold_every_window_of_the_policy() -> None:
    bounds = revoke_buckets_s(POLICY)

    assert {7200.0, 18000.0, 900.0, 3600.0, 14400.0, 604800.0, 86400.0} <= set(bounds)
    assert list(bounds) == sorted(set(bounds))


def test_events_are_counted_by_stream_and_outcome_and_no_label_names_an_identity() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry, Policy(), Census(), dict)

    metrics.count_event("identity.status", "applied")
    metrics.count_event("identity.status", "repeat")
    metrics.count_event("device.posture", "implausible")
    metrics.read_event("identity.status", T0, T0 + 5 * S)
    metrics.clock_lag.labels(partition="3").set(1.5)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("accessdrift_events_total", stream="identity.status", outcome="applied") == 1
    assert value("accessdrift_events_total", stream="identity.status", outcome="repeat") == 1
    assert value("accessdrift_events_total", stream="device.posture", outcome="implausible") == 1
    assert value("accessdrift_input_event_lag_seconds", stream="identity.status") == 5
    assert value("accessdrift_input_last_event_timestamp_seconds", stream="identity.status") == (
        (T0 + 5 * S) / S
    )
    assert value("accessdrift_clock_lag_seconds", partition="3") == 1.5
    allowed = {"trigger", "identity_kind", "privileged", "kind", "severity", "outcome", "stream",
               "topic", "partition", "le"}  # fmt: skip
    for family in registry.collect():
        assert family.name.startswith("accessdrift_")
        for sample in family.samples:
            assert set(sample.labels) <= allowed
