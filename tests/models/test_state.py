"""State structs: the held-interval rule, exception cover, and a lossless binary form."""

from __future__ import annotations

from accessdrift.models.state import (
    DeviceState,
    DeviceView,
    Grant,
    IdentityState,
    Obligation,
    TriggerState,
    Waiver,
    decode_device_state,
    decode_identity_state,
    encode_state,
    grant_key,
)


def grant(held: bool, granted_at: int | None, changed_at: int) -> Grant:
    return Grant("s", "e", "role", False, None, False, held, changed_at, "x", granted_at, "g")


def test_held_at_covers_the_latest_held_interval() -> None:
    still_held = grant(held=True, granted_at=10, changed_at=15)
    revoked = grant(held=False, granted_at=10, changed_at=20)
    never_granted = grant(held=False, granted_at=None, changed_at=20)

    assert [still_held.held_at(t) for t in (9, 10, 100)] == [False, True, True]
    assert [revoked.held_at(t) for t in (9, 10, 19, 20)] == [False, True, True, False]
    assert never_granted.held_at(15) is False


def test_a_waiver_covers_matching_deadlines_inside_its_validity() -> None:
    any_system = Waiver("x1", None, None, approved_at_us=10, expires_at_us=20, event_id="e")
    one_system = Waiver("x2", "github", None, approved_at_us=10, expires_at_us=20, event_id="e")
    one_entitlement = Waiver(
        "x3", "github", "admin", approved_at_us=10, expires_at_us=20, event_id="e"
    )

    assert any_system.covers(None, None, 15)
    assert not any_system.covers("github", "admin", 9)
    assert not any_system.covers("github", "admin", 20)
    assert one_system.covers("github", "read", 15)
    assert not one_system.covers(None, None, 15)
    assert one_entitlement.covers("github", "admin", 15)
    assert not one_entitlement.covers("github", "read", 15)


def test_identity_state_survives_its_binary_form() -> None:
    state = IdentityState(identity_id="alice", status="terminated", transitions=[(5, "terminated")])
    state.grants[grant_key("s", "e")] = grant(held=True, granted_at=1, changed_at=1)
    state.devices["mac"] = DeviceView("lost", True, 3, "d1")
    state.waivers["x"] = Waiver("x", None, None, 1, 9, "w")
    state.triggers["t"] = TriggerState("leaver", "s2", 5, ended_at_us=7)
    state.obligations["f"] = Obligation(
        "f", "t", "leaver", "s2", "s", "e", "role", None, False, 5, 6, "high", met_at_us=7
    )

    assert decode_identity_state(encode_state(state)) == state


def test_device_state_survives_its_binary_form() -> None:
    state = DeviceState("mac", "compliant", ("alice", "bob"), 3, "d1")

    assert decode_device_state(encode_state(state)) == state
