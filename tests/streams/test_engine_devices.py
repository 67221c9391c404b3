"""The joiner against a reference, whatever the order in which an activation and one device's
posture history reach the identity (the device's own events keep their order, as the pipeline
keeps them): a backlog whose device side is read first, or an HR feed hours late, must not turn a
joiner met on time into a finding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from accessdrift.models.findings import FindingRecord
from accessdrift.models.messages import DeviceSignal, IdentityMessage, StatusChange
from accessdrift.models.policy import Policy
from accessdrift.models.state import decode_identity_state, encode_state
from accessdrift.streams.engine import Engine

H = 3600 * 1_000_000
T0 = 1_767_600_000 * 1_000_000
WINDOW_H = 24  # the default joiner window
POSTURES = ("compliant", "noncompliant", "lost", "unenrolled")


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[int, str]], list[int]]:
    """A device's posture changes (hours after the activation, on the half hour so that none
    falls on the deadline), and where in the device's sequence the activation arrives."""
    hours = draw(st.lists(st.integers(-40, 60), min_size=1, max_size=8, unique=True))
    timeline = [(hour, draw(st.sampled_from(POSTURES))) for hour in sorted(hours)]
    arrives_after = draw(st.integers(0, len(timeline)))
    return timeline, [arrives_after]


def met_on_time(timeline: list[tuple[int, str]]) -> bool:
    """Whether the device was compliant at some moment from the activation to the deadline."""
    for index, (hour, posture) in enumerate(timeline):
        until = timeline[index + 1][0] + 0.5 if index + 1 < len(timeline) else float("inf")
        if posture == "compliant" and until > 0 and hour + 0.5 < WINDOW_H:
            return True
    return False


@settings(max_examples=300, deadline=None)
@given(histories())
def test_the_joiner_is_judged_on_the_device_history_whatever_arrives_first(
    history: tuple[list[tuple[int, str]], list[int]],
) -> None:
    timeline, (arrives_after,) = history
    signals: list[IdentityMessage] = [
        DeviceSignal("alice", f"d{n}", T0 + hour * H + H // 2, "mac", posture, True)  # type: ignore[arg-type]
        for n, (hour, posture) in enumerate(timeline)
    ]
    activation = StatusChange("alice", "s1", T0, "active", "human", None, None)
    messages = [*signals[:arrives_after], activation, *signals[arrives_after:]]
    engine = Engine(Policy(), grace_s=0)
    state = engine.new_state("alice")
    records = []
    for message in messages:
        # The clock stays before every deadline while events arrive (a backlog), and the state
        # goes through its encoding between steps, as through the changelog.
        step = engine.apply(state, message, T0 - 100 * H)
        records.extend(step.records)
        state = decode_identity_state(encode_state(step.state))
    records.extend(engine.advance(state, T0 + 1000 * H).records)

    joiner = [r for r in records if isinstance(r, FindingRecord) and r.trigger == "joiner"]
    if met_on_time(timeline):
        assert joiner == []
    else:
        assert [r.status for r in joiner][:1] == ["open"]
