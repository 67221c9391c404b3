"""State structs: versions (stale, repeat, arrival order at equal times), the held-interval
rule, exception cover, collision-free keys, and a lossless binary form."""

from __future__ import annotations

from accessdrift.models.state import (
    DeviceState,
    DeviceView,
    Grant,
    IdentityState,
    Obligation,
    TriggerState,
    Version,
    Waiver,
    compose_key,
    decode_device_state,
    decode_identity_state,
    encode_state,
    grant_key,
)


def grant(held: bool, granted_at: int | None, revoked_at: int | None = None) -> Grant:
    version = Version(revoked_at or granted_at or 0, ["x"])
    return Grant("s", "e", "role", False, None, False, held, version, granted_at, "g", revoked_at)


def test_a_version_drops_stale_events_and_repeats_and_keeps_arrival_order_at_equal_times() -> None:
    version = Version()

    assert version.admit(10, "e9") == "applied"
    assert version.admit(10, "e9") == "repeat"
    assert version.admit(10, "e10") == "applied", "same time, later in arrival order"
    assert version.admit(10, "e9") == "repeat", "still a repeat after another event at that time"
    assert version.admit(9, "e1") == "stale"
    assert version.admit(11, "e1") == "applied"
    assert version == Version(11, ["e1"])


def test_held_at_covers_the_latest_held_interval() -> None:
    still_held = grant(held=True, granted_at=10)
    revoked = grant(held=False, granted_at=10, revoked_at=20)
    never_granted = grant(held=False, granted_at=None, revoked_at=20)

    assert [still_held.held_at(t) for t in (9, 10, 100)] == [False, True, True]
    assert [revoked.held_at(t) for t in (9, 10, 19, 20)] == [False, True, True, False]
    assert never_granted.held_at(15) is False


def test_a_waiver_covers_matching_deadlines_inside_its_validity() -> None:
    any_system = Waiver("x1", None, None, approved_at_us=10, expires_at_us=20, version=Version())
    one_system = Waiver(
        "x2", "github", None, approved_at_us=10, expires_at_us=20, version=Version()
    )
    one_entitlement = Waiver(
        "x3", "github", "admin", approved_at_us=10, expires_at_us=20, version=Version()
    )

    assert any_system.covers(None, None, 15)
    assert not any_system.covers("github", "admin", 9)
    assert not any_system.covers("github", "admin", 20)
    assert one_system.covers("github", "read", 15)
    assert not one_system.covers(None, None, 15)
    assert one_entitlement.covers("github", "admin", 15)
    assert not one_entitlement.covers("github", "read", 15)


def test_keys_cannot_collide_whatever_the_names_contain() -> None:
    assert grant_key("a\x1fb", "c") != grant_key("a", "b\x1fc")
    assert grant_key("1:a", "b") != grant_key("1", ":ab")
    assert compose_key("ab", "c") != compose_key("a", "bc")


def test_identity_state_survives_its_binary_form() -> None:
    state = IdentityState(
        identity_id="alice", status="terminated", transitions=[(5, "terminated", "s2")]
    )
    state.grants[grant_key("s", "e")] = grant(held=True, granted_at=1)
    state.devices["mac"] = DeviceView("lost", True, 3, Version(3, ["d1"]))
    state.waivers["x"] = Waiver("x", None, None, 1, 9, Version(1, ["w"]))
    trigger = TriggerState("leaver", "s2", 5, ended_at_us=7)
    trigger.live["f"] = None
    state.triggers["t"] = trigger
    state.obligations["f"] = Obligation(
        "f", "t", "leaver", "s2", "s", "e", "role", None, False, 5, 6, "high", met_at_us=7
    )
    state.by_grant[grant_key("s", "e")] = {"f": None}
    state.deadlines.append((6, "f"))

    assert decode_identity_state(encode_state(state)) == state


def test_device_state_survives_its_binary_form() -> None:
    state = DeviceState("mac", "compliant", ["alice", "bob"], Version(3, ["d1"]))

    assert decode_device_state(encode_state(state)) == state
