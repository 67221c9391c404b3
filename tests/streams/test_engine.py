"""Unit tests of the engine's interface: repeats and stale messages, messages between
identities, wake times and grace, and forgetting what the late-event horizon no longer needs."""

from __future__ import annotations

from accessdrift.models.findings import FindingRecord, OffboardingRecord
from accessdrift.models.messages import (
    DeviceSignal,
    EntitlementChange,
    ExceptionGrant,
    OwnerLink,
    OwnerSignal,
    StatusChange,
)
from accessdrift.models.policy import Policy
from accessdrift.models.state import IdentityState, grant_key
from accessdrift.streams.engine import Engine, Limits

LATE_EVENT_HORIZON_S = Limits().horizon_s

S = 1_000_000
H = 3600 * S
T0 = 1_767_600_000 * S


def status(
    identity: str, event_id: str, at: int, value: str, kind: str = "human", owner: str | None = None
) -> StatusChange:
    return StatusChange(identity, event_id, at, value, kind, None, owner)  # type: ignore[arg-type]


def grant(identity: str, event_id: str, at: int, action: str = "granted") -> EntitlementChange:
    return EntitlementChange(
        identity,
        event_id,
        at,
        "github",
        "admin",
        action,
        "role",
        True,
        None,
        False,  # type: ignore[arg-type]
    )


def run(engine: Engine, state: IdentityState, *messages: object, now_us: int) -> list[object]:
    out: list[object] = []
    for message in messages:
        step = engine.apply(state, message, now_us)  # type: ignore[arg-type]
        state = step.state
        out.extend([*step.records, *step.messages])
    return out


def test_repeated_and_stale_messages_are_not_applied() -> None:
    engine = Engine(Policy())
    state = engine.new_state("alice")
    signal = DeviceSignal("alice", "d1", T0, "mac", "compliant", True)
    waiver = ExceptionGrant("alice", "x1", T0, "EXC", None, None, T0 + H, "r", "b")
    messages = [status("alice", "s1", T0, "active"), grant("alice", "g1", T0), signal, waiver]

    assert [engine.apply(state, m, T0).applied for m in messages] == [True] * 4
    assert [engine.apply(state, m, T0).applied for m in messages] == [False] * 4
    stale = [status("alice", "s0", T0 - 1, "terminated"), grant("alice", "g0", T0 - 1, "revoked")]
    assert [engine.apply(state, m, T0).applied for m in stale] == [False, False]
    assert state.status == "active"
    assert state.grants[grant_key("github", "admin")].held


def test_wake_time_is_the_deadline_plus_grace_and_advance_fires_after_it() -> None:
    engine = Engine(Policy(), grace_s=60)
    state = engine.new_state("alice")
    run(engine, state, grant("alice", "g1", T0), now_us=T0)
    step = engine.apply(state, status("alice", "s1", T0 + H, "terminated"), T0 + H)

    assert step.wake_us == T0 + 2 * H + 60 * S
    assert engine.advance(state, T0 + 2 * H + 60 * S).records == []
    fired = engine.advance(state, T0 + 2 * H + 60 * S + 1).records
    assert [(r.trigger, r.status) for r in fired if isinstance(r, FindingRecord)] == [
        ("leaver", "open")
    ]
    assert engine.wake_us(state) is None


def test_a_non_human_identity_links_to_its_owner_and_unlinks_on_a_new_owner() -> None:
    engine = Engine(Policy())
    nhi = engine.new_state("svc")

    first = run(
        engine, nhi, status("svc", "n1", T0, "active", "service_account", "alice"), now_us=T0
    )
    second = run(
        engine, nhi, status("svc", "n2", T0 + H, "active", "service_account", "bob"), now_us=T0
    )

    assert first == [OwnerLink("alice", "n1", T0, "svc", linked=True)]
    assert second == [
        OwnerLink("alice", "n2", T0 + H, "svc", linked=False),
        OwnerLink("bob", "n2", T0 + H, "svc", linked=True),
    ]


def test_an_owner_answers_a_link_and_signals_status_changes_to_linked_nhis_only() -> None:
    engine = Engine(Policy())
    owner = engine.new_state("alice")
    run(engine, owner, status("alice", "s1", T0, "active"), now_us=T0)

    reply = run(engine, owner, OwnerLink("alice", "n1", T0, "svc", linked=True), now_us=T0)
    run(engine, owner, OwnerLink("alice", "n2", T0, "old", linked=True), now_us=T0)
    run(engine, owner, OwnerLink("alice", "n3", T0 + 1, "old", linked=False), now_us=T0)
    change = run(engine, owner, status("alice", "s2", T0 + H, "terminated"), now_us=T0 + H)

    assert reply == [OwnerSignal("svc", "s1", T0, "alice", "active")]
    signals = [m for m in change if isinstance(m, OwnerSignal)]
    assert signals == [OwnerSignal("svc", "s2", T0 + H, "alice", "terminated")]


def test_an_owner_signal_for_a_former_owner_is_ignored() -> None:
    engine = Engine(Policy())
    nhi = engine.new_state("svc")
    run(engine, nhi, status("svc", "n1", T0, "active", "service_account", "bob"), now_us=T0)

    step = engine.apply(nhi, OwnerSignal("svc", "s2", T0 + H, "alice", "terminated"), T0 + H)

    assert not step.applied
    assert nhi.triggers == {}


def test_offboarding_is_emitted_once_when_the_last_obligation_is_met() -> None:
    engine = Engine(Policy())
    state = engine.new_state("alice")
    run(engine, state, grant("alice", "g1", T0), now_us=T0)
    at_termination = run(engine, state, status("alice", "s1", T0 + H, "terminated"), now_us=T0 + H)
    revoked_at = T0 + H + 60 * S
    at_revoke = run(engine, state, grant("alice", "r1", revoked_at, "revoked"), now_us=revoked_at)
    repeat = run(engine, state, grant("alice", "r1", revoked_at, "revoked"), now_us=revoked_at)

    assert at_termination == []
    assert [type(r) for r in at_revoke] == [OffboardingRecord]
    assert repeat == []


def test_offboarding_waits_for_grace_so_a_late_grant_is_in_the_one_record() -> None:
    engine = Engine(Policy(), grace_s=60)
    state = engine.new_state("alice")
    terminated = T0 + H
    step = engine.apply(state, status("alice", "s1", terminated, "terminated"), terminated)
    assert step.records == []
    assert step.wake_us == terminated + 60 * S

    late_grant = engine.apply(state, grant("alice", "g1", T0), terminated + 30 * S)
    revoked = engine.apply(
        state, grant("alice", "r1", terminated + 40 * S, "revoked"), terminated + 40 * S
    )
    assert late_grant.records == revoked.records == []

    records = engine.advance(state, terminated + 61 * S).records
    assert [type(r) for r in records] == [OffboardingRecord]
    (record,) = records
    assert isinstance(record, OffboardingRecord)
    assert [(e.system, e.within_window) for e in record.entitlements] == [("github", True)]


def test_ended_triggers_are_forgotten_after_the_late_event_horizon() -> None:
    engine = Engine(Policy())
    state = engine.new_state("alice")
    run(
        engine,
        state,
        grant("alice", "g1", T0),
        status("alice", "s1", T0 + H, "terminated"),
        status("alice", "s2", T0 + 2 * H, "active"),
        now_us=T0 + 2 * H,
    )
    assert any(t.ended_at_us is not None for t in state.triggers.values())

    later = T0 + 3 * H + LATE_EVENT_HORIZON_S * S
    run(engine, state, status("alice", "s3", later, "active"), now_us=later)

    assert [t.trigger for t in state.triggers.values()] == ["joiner"]
    assert [ob.trigger for ob in state.obligations.values()] == ["joiner"]
    assert state.transitions == [(T0 + 2 * H, "active", "s2")]


def test_events_at_the_same_time_apply_in_arrival_order_and_repeats_by_identity() -> None:
    engine = Engine(Policy())
    state = engine.new_state("alice")
    run(engine, state, grant("alice", "g1", T0), now_us=T0)

    applied = [
        engine.apply(state, m, T0 + H).applied
        for m in (
            status("alice", "e9", T0 + H, "active"),
            status("alice", "e10", T0 + H, "terminated"),
            status("alice", "e9", T0 + H, "active"),
        )
    ]

    assert applied == [True, True, False]
    assert state.status == "terminated"
    assert [t.trigger for t in state.triggers.values() if t.ended_at_us is None] == ["leaver"]


def test_every_obligation_that_ends_is_reported_with_how() -> None:
    engine = Engine(Policy(), grace_s=0)
    state = engine.new_state("alice")
    run(engine, state, grant("alice", "g1", T0), now_us=T0)
    slack = EntitlementChange(
        "alice", "g2", T0, "slack", "ws", "granted", "role", False, None, False
    )
    run(engine, state, slack, status("alice", "s1", T0 + H, "terminated"), now_us=T0 + H)
    revoke_slack = EntitlementChange(
        "alice", "r2", T0 + H + 60 * S, "slack", "ws", "revoked", "role", False, None, False
    )
    on_time = engine.apply(state, revoke_slack, T0 + H + 60 * S)
    late = engine.apply(state, grant("alice", "r1", T0 + 3 * H, "revoked"), T0 + 3 * H)

    assert [(e.system, e.outcome, e.time_to_revoke_us) for e in on_time.ended] == [
        ("slack", "on_time", 60 * S)
    ]
    assert [(e.system, e.outcome, e.time_to_revoke_us) for e in late.ended] == [
        ("github", "late", 2 * H)
    ]
    assert [r.status for r in late.records if isinstance(r, FindingRecord)] == ["open", "resolved"]


def test_an_owner_answers_every_link_even_when_it_is_unknown() -> None:
    engine = Engine(Policy())
    owner = engine.new_state("ghost")

    reply = run(engine, owner, OwnerLink("ghost", "n1", T0, "svc", linked=True), now_us=T0)

    assert reply == [OwnerSignal("svc", "", -(2**62), "ghost", None)]


def test_history_stays_bounded_however_often_an_identity_flaps() -> None:
    engine = Engine(Policy(), limits=Limits(ended_triggers=8, transitions=8))
    state = engine.new_state("alice")
    run(engine, state, grant("alice", "g1", T0), now_us=T0)
    for number in range(200):
        value = "terminated" if number % 2 == 0 else "active"
        at = T0 + (number + 1) * S
        run(engine, state, status("alice", f"s{number}", at, value), now_us=at)

    assert len(state.transitions) <= 8
    assert len([t for t in state.triggers.values() if t.ended_at_us is not None]) <= 8 + 1
    assert len(state.settled) <= 8 + 1


def test_a_joiner_is_met_by_device_trust_that_ended_before_the_activation_arrived() -> None:
    # The activation reaches the identity after the device history: an HR feed hours late, or
    # a backlog whose device side is read first. The laptop was compliant from T0 + 12 h to
    # T0 + 36 h, inside the day after the activation at T0: the joiner was met on time.
    engine = Engine(Policy(), grace_s=0)
    state = engine.new_state("alice")
    compliant = DeviceSignal("alice", "d1", T0 + 12 * H, "mac", "compliant", True)
    lost = DeviceSignal("alice", "d2", T0 + 36 * H, "mac", "lost", True)
    out = run(engine, state, compliant, lost, status("alice", "s1", T0, "active"), now_us=T0)
    out.extend(engine.advance(state, T0 + 100 * H).records)

    assert [r for r in out if isinstance(r, FindingRecord) and r.trigger == "joiner"] == []
    assert state.trust_spans == [(T0 + 12 * H, T0 + 36 * H, "mac")]


def test_trust_that_ended_before_the_activation_does_not_meet_it() -> None:
    engine = Engine(Policy(), grace_s=0)
    state = engine.new_state("alice")
    compliant = DeviceSignal("alice", "d1", T0 - 12 * H, "mac", "compliant", True)
    lost = DeviceSignal("alice", "d2", T0 - 6 * H, "mac", "lost", True)
    run(engine, state, compliant, lost, status("alice", "s1", T0, "active"), now_us=T0)
    records = engine.advance(state, T0 + 100 * H).records

    assert [(r.trigger, r.status) for r in records if isinstance(r, FindingRecord)] == [
        ("joiner", "open")
    ]


def test_ended_device_trust_is_forgotten_beyond_its_limit() -> None:
    engine = Engine(Policy(), limits=Limits(trust_spans=4))
    state = engine.new_state("alice")
    for number in range(40):
        posture = "compliant" if number % 2 == 0 else "noncompliant"
        at = T0 + number * S
        signal = DeviceSignal("alice", f"d{number}", at, "mac", posture, True)  # type: ignore[arg-type]
        run(engine, state, signal, now_us=at)

    assert len(state.trust_spans) == 4
    assert state.trust_spans[-1] == (T0 + 38 * S, T0 + 39 * S, "mac")


def test_an_open_finding_resolves_once_the_clock_reaches_its_earliest_landing() -> None:
    """The reactivation arrives first, but the revocation a minute before it, read later from
    the other stream, is what the resolve must say: it waits until the clock reaches a landing."""
    engine = Engine(Policy(), grace_s=0)
    state = engine.new_state("alice")
    run(engine, state, status("alice", "s1", T0, "active"), grant("alice", "g1", T0), now_us=T0)
    run(engine, state, status("alice", "s2", T0 + H, "terminated"), now_us=T0 + H)
    opened = engine.advance(state, T0 + 3 * H).records
    assert [(r.trigger, r.status) for r in opened if isinstance(r, FindingRecord)] == [
        ("leaver", "open")
    ]
    clock_us = T0 + 4 * H
    revoked_us, reactivated_us = clock_us + 15 * 60 * S, clock_us + 16 * 60 * S

    step = engine.apply(state, status("alice", "s3", reactivated_us, "active"), clock_us)
    assert step.records == []
    assert step.wake_us == reactivated_us - 1
    assert run(engine, state, grant("alice", "g2", revoked_us, "revoked"), now_us=clock_us) == []
    assert engine.advance(state, revoked_us - 1).records == []
    resolved = engine.advance(state, revoked_us).records
    assert [(r.status, r.resolved_at_us) for r in resolved if isinstance(r, FindingRecord)] == [
        ("resolved", revoked_us)
    ]
    assert engine.advance(state, reactivated_us + H).records == []
