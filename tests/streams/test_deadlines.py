"""The deadline index: which identities need the clock, in (time, identity) order."""

from __future__ import annotations

from accessdrift.streams.deadlines import DeadlineIndex


def test_due_identities_pop_earliest_first_and_only_once() -> None:
    index = DeadlineIndex()
    index.set("b", 20)
    index.set("a", 20)
    index.set("c", 10)
    index.set("d", 30)

    assert index.pop_due(21) == ["c", "a", "b"]
    assert index.pop_due(21) == []
    assert len(index) == 1
    assert index.next_us() == 30


def test_a_wake_time_is_due_only_once_the_clock_passes_it() -> None:
    index = DeadlineIndex()
    index.set("a", 10)

    assert index.pop_due(10) == []
    assert index.pop_due(11) == ["a"]


def test_a_new_wake_time_replaces_the_old_one() -> None:
    index = DeadlineIndex()
    index.set("a", 10)
    index.set("a", 50)
    index.set("b", 5)
    index.set("b", None)

    assert index.pop_due(20) == []
    assert index.next_us() == 50
    assert index.pop_due(51) == ["a"]
    assert index.next_us() is None
