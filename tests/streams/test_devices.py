"""The device router: one device's state, and explicit signals for the identities it touches."""

from __future__ import annotations

from accessdrift.models.messages import DevicePosture
from accessdrift.streams.devices import route_device


def posture(event_id: str, at: int, value: str, *ids: str) -> DevicePosture:
    return DevicePosture("mac-1", event_id, at, value, ids)  # type: ignore[arg-type]


def test_every_bound_identity_hears_the_posture() -> None:
    routed = route_device(None, posture("d1", 10, "compliant", "alice", "bob"))

    assert not isinstance(routed, str)
    state, signals = routed
    assert state.identity_ids == ["alice", "bob"]
    assert [(s.identity_id, s.posture, s.bound, s.occurred_at_us) for s in signals] == [
        ("alice", "compliant", True, 10),
        ("bob", "compliant", True, 10),
    ]


def test_an_identity_dropped_from_the_binding_hears_it_is_unbound() -> None:
    first = route_device(None, posture("d1", 10, "compliant", "alice", "bob"))
    assert not isinstance(first, str)
    second = route_device(first[0], posture("d2", 20, "lost", "alice"))
    assert not isinstance(second, str)
    signals = second[1]

    assert [(s.identity_id, s.posture, s.bound) for s in signals] == [
        ("alice", "lost", True),
        ("bob", "lost", False),
    ]


def test_repeated_and_stale_events_change_nothing() -> None:
    routed = route_device(None, posture("d2", 20, "lost", "alice"))
    assert not isinstance(routed, str)
    state = routed[0]

    assert route_device(state, posture("d2", 20, "lost", "alice")) == "repeat"
    assert route_device(state, posture("d1", 10, "compliant", "bob")) == "stale"
    assert state.identity_ids == ["alice"]


def test_a_second_event_at_the_same_time_applies_in_arrival_order() -> None:
    routed = route_device(None, posture("d9", 20, "compliant", "alice"))
    assert not isinstance(routed, str)
    later = route_device(routed[0], posture("d10", 20, "lost", "alice"))

    assert not isinstance(later, str)
    assert later[0].posture == "lost"


def test_a_device_shared_by_many_identities_is_routed_in_linear_time() -> None:
    many = [f"u{i}" for i in range(20_000)]
    routed = route_device(None, posture("d1", 10, "compliant", *many))
    assert not isinstance(routed, str)
    again = route_device(routed[0], posture("d2", 20, "lost", *many[1:]))

    assert not isinstance(again, str)
    assert [s.identity_id for s in again[1] if not s.bound] == ["u0"]
