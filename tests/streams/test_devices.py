"""The device router: one device's state, and explicit signals for the identities it touches."""

from __future__ import annotations

from accessdrift.models.messages import DevicePosture
from accessdrift.streams.devices import route_device


def posture(event_id: str, at: int, value: str, *ids: str) -> DevicePosture:
    return DevicePosture("mac-1", event_id, at, value, ids)  # type: ignore[arg-type]


def test_every_bound_identity_hears_the_posture() -> None:
    state, signals = route_device(None, posture("d1", 10, "compliant", "alice", "bob"))

    assert state is not None
    assert state.identity_ids == ("alice", "bob")
    assert [(s.identity_id, s.posture, s.bound, s.occurred_at_us) for s in signals] == [
        ("alice", "compliant", True, 10),
        ("bob", "compliant", True, 10),
    ]


def test_an_identity_dropped_from_the_binding_hears_it_is_unbound() -> None:
    state, _ = route_device(None, posture("d1", 10, "compliant", "alice", "bob"))
    state, signals = route_device(state, posture("d2", 20, "lost", "alice"))

    assert [(s.identity_id, s.posture, s.bound) for s in signals] == [
        ("alice", "lost", True),
        ("bob", "lost", False),
    ]


def test_repeated_and_stale_events_change_nothing() -> None:
    state, _ = route_device(None, posture("d2", 20, "lost", "alice"))

    assert route_device(state, posture("d2", 20, "lost", "alice")) == (state, [])
    assert route_device(state, posture("d1", 10, "compliant", "bob")) == (state, [])
