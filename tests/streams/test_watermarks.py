"""Watermarks: how channels combine into a clock, in wall and event mode; what an input partition
reports; which timestamps are implausible."""

from __future__ import annotations

import pytest

from accessdrift.models.state import NEVER_US
from accessdrift.streams.ingest import plausibility_error
from accessdrift.streams.watermarks import (
    EVENT_IDLE_AFTER_S,
    InputProgress,
    Mark,
    Report,
    Watermarks,
    combine,
)
from accessdrift.streams.worker import WorkerSettings

S = 1_000_000
WALL = 1_800_000_000 * S


def test_wall_mode_takes_the_minimum_never_past_wall_time() -> None:
    assert combine([(WALL - 5 * S, False), (WALL - 9 * S, True)], "wall", WALL) == (
        WALL - 9 * S,
        False,
    )
    assert combine([(WALL + 60 * S, False)], "wall", WALL) == (WALL, False)


def test_event_mode_ignores_idle_channels_unless_all_are() -> None:
    assert combine([(100, False), (50, True), (70, False)], "event", WALL) == (70, False)
    assert combine([(100, True), (50, True)], "event", WALL) == (100, True)
    assert combine([], "event", WALL) == (NEVER_US, True)


def _mark(*reports: Report, partitions: int = 2) -> Mark:
    return Mark({"hr": partitions}, list(reports))


def test_a_channel_nobody_reported_holds_the_clock_back() -> None:
    marks = Watermarks("wall", ("hr",), (), device_channels=0, identity_channels=0)
    marks.update(_mark(Report("input", "hr", 0, WALL - 10 * S, False)))

    assert marks.advance(WALL) is None

    marks.update(_mark(Report("input", "hr", 1, WALL - 3 * S, True)))
    assert marks.advance(WALL) == WALL - 10 * S


def test_the_clock_never_goes_back_and_a_restored_clock_is_its_floor() -> None:
    marks = Watermarks("event", ("hr",), (), device_channels=0, identity_channels=0)
    marks.restore(500)
    assert marks.advance(WALL) == 500, "known from the table before any report"
    marks.update(_mark(Report("input", "hr", 0, 300, False), Report("input", "hr", 1, 900, False)))
    marks.update(_mark(Report("input", "hr", 0, 200, False)))
    assert marks.channels[("input", "hr", 0)] == (300, False), "watermarks only move forward"
    marks.update(_mark(Report("input", "hr", 0, 1000, True)))
    assert marks.advance(WALL) == 900


def test_device_and_identity_channels_count_and_progress_excludes_identities() -> None:
    marks = Watermarks("event", ("hr",), ("mdm",), device_channels=1, identity_channels=2)
    marks.update(
        Mark(
            {"hr": 2, "mdm": 1},
            [
                Report("input", "hr", 0, 800, False),
                Report("input", "hr", 1, 900, True),
                Report("input", "mdm", 0, 600, True),
                Report("device", "", 0, 600, False),
                Report("identity", "", 1, 400, False),
            ],
        )
    )

    assert marks.progress(WALL) == (600, False)
    assert marks.advance(WALL) is None, "its own identity channel has not been set yet"
    marks.set_own(0, (600, False))
    assert marks.advance(WALL) == 400


def test_an_inbox_idle_before_its_inputs_moved_on_holds_the_event_clock() -> None:
    """A device partition said it was idle at 600; the device topic has since been read to 900,
    so it may hold unprocessed posture events: idle, it would let the clock jump past them."""
    marks = Watermarks("event", ("hr",), ("mdm",), device_channels=1, identity_channels=1)
    marks.update(
        Mark(
            {"hr": 1, "mdm": 1},
            [
                Report("input", "hr", 0, 1000, True),
                Report("input", "mdm", 0, 900, True),
                Report("device", "", 0, 600, True),
            ],
        )
    )
    assert marks.progress(WALL) == (600, False)
    marks.set_own(0, (600, False))
    assert marks.advance(WALL) == 600

    marks.update(Mark({}, [Report("device", "", 0, 900, True)]))
    assert marks.progress(WALL) == (1000, True), "caught up: idle again, nothing held back"
    marks.set_own(0, (1000, True))
    assert marks.advance(WALL) == 1000


def test_in_wall_time_a_stale_idle_report_holds_the_clock_at_its_own_time() -> None:
    marks = Watermarks("wall", ("hr",), ("mdm",), device_channels=1, identity_channels=0)
    marks.update(
        Mark(
            {"hr": 1, "mdm": 1},
            [
                Report("input", "hr", 0, WALL, True),
                Report("input", "mdm", 0, WALL, True),
                Report("device", "", 0, WALL - 5 * S, True),
            ],
        )
    )
    assert marks.advance(WALL) == WALL - 5 * S


def test_a_partition_read_to_its_end_is_idle() -> None:
    progress = InputProgress()
    empty = progress.report("hr", 0, end_offset=0, position=0, mode="wall", wall_us=WALL, now_s=0)
    assert empty == Report("input", "hr", 0, WALL, True, 0, 0)
    behind = progress.report("hr", 0, end_offset=5, position=0, mode="wall", wall_us=WALL, now_s=0)
    assert behind is None, "records to read, none read yet: nothing can be said"

    progress.read("hr", 0, WALL - 60 * S)
    assert progress.report("hr", 0, 5, 4, "wall", WALL, 0) == Report(
        "input", "hr", 0, WALL - 60 * S, False, 5, 4
    )
    progress.read("hr", 0, WALL - 90 * S)
    assert progress.report("hr", 0, 6, 5, "event", WALL, 0) == Report(
        "input", "hr", 0, WALL - 60 * S, False, 6, 5
    ), "an older event does not move the watermark back"

    progress.forget("hr", 0)
    assert progress.report("hr", 0, 6, 5, "wall", WALL, 0) is None, "forgotten: nothing to say"


def test_in_event_time_a_partition_is_idle_only_once_it_stays_at_its_end() -> None:
    """A producer's records reach one partition a little after another's: a partition at its end
    for a moment is busy at what it has read, so the clock cannot pass records on the way."""
    progress = InputProgress()
    progress.read("hr", 0, WALL - 60 * S)
    busy = Report("input", "hr", 0, WALL - 60 * S, False, 5, 5)
    assert progress.report("hr", 0, 5, 5, "event", WALL, now_s=10.0) == busy
    assert progress.report("hr", 0, 5, 5, "event", WALL, 10.0 + EVENT_IDLE_AFTER_S / 2) == busy
    idle_at_s = 10.0 + EVENT_IDLE_AFTER_S
    idle = Report("input", "hr", 0, WALL - 60 * S, True, 5, 5)
    assert progress.report("hr", 0, 5, 5, "event", WALL, idle_at_s) == idle

    # New records: busy again, and the wait starts over once they are read.
    assert progress.report("hr", 0, 8, 5, "event", WALL, idle_at_s + 1) == Report(
        "input", "hr", 0, WALL - 60 * S, False, 8, 5
    )
    progress.read("hr", 0, WALL - 30 * S)
    assert progress.report("hr", 0, 8, 8, "event", WALL, idle_at_s + 2) == Report(
        "input", "hr", 0, WALL - 30 * S, False, 8, 8
    )
    assert progress.report("hr", 0, 8, 8, "event", WALL, idle_at_s + 2 + EVENT_IDLE_AFTER_S) == (
        Report("input", "hr", 0, WALL - 30 * S, True, 8, 8)
    )


def test_a_partition_committed_to_its_end_is_idle_after_a_restart() -> None:
    progress = InputProgress()
    assert progress.report("hr", 0, 7, 7, "event", WALL, 0.0) is None, "nothing read: wait"
    assert progress.report("hr", 0, 7, 7, "event", WALL, EVENT_IDLE_AFTER_S) == Report(
        "input", "hr", 0, NEVER_US, True, 7, 7
    )


@pytest.mark.parametrize(
    ("clock", "occurred_at_us", "latest_us", "rejected"),
    [
        ("wall", WALL + 30 * 60 * S, None, False),
        ("wall", WALL + 2 * 3600 * S, None, True),
        ("wall", WALL + 100 * 365 * 86_400 * S, None, True),
        ("event", WALL + 100 * 365 * 86_400 * S, None, False),
        ("event", WALL - 10 * 86_400 * S, WALL - 20 * 86_400 * S, False),
        ("event", WALL + 100 * 365 * 86_400 * S, WALL - 20 * 86_400 * S, True),
    ],
)
def test_implausible_timestamps(
    clock: str, occurred_at_us: int, latest_us: int | None, rejected: bool
) -> None:
    settings = WorkerSettings(broker="x", clock=clock)  # type: ignore[arg-type]

    problem = plausibility_error(
        occurred_at_us, settings.clock, settings.max_ahead_us, latest_us, WALL
    )

    assert (problem is not None) == rejected
    if problem is not None:
        assert problem.startswith("value.occurred_at: ")
        assert "--max-ahead" in problem


def test_an_inbox_report_never_moves_the_event_clock_past_the_inputs_this_partition_has_seen() -> (
    None
):
    """Another identity partition read a newer mark (from another worker) and says it is idle at
    150; this partition has read marks up to 100 only, and the batches before the newer mark may
    not have reached it yet: the clock stays at 100."""
    marks = Watermarks("event", ("hr",), ("mdm",), device_channels=1, identity_channels=2)
    marks.update(
        Mark(
            {"hr": 1, "mdm": 1},
            [
                Report("input", "hr", 0, 100, True),
                Report("input", "mdm", 0, 90, True),
                Report("device", "", 0, 90, True),
                Report("identity", "", 1, 150, True),
            ],
        )
    )
    own = marks.progress(WALL)
    assert own == (100, True)
    marks.set_own(0, own)
    assert marks.advance(WALL) == 100


def test_an_input_partition_is_idle_on_the_word_of_the_report_that_saw_most_of_it() -> None:
    marks = Watermarks("event", ("hr",), (), device_channels=0, identity_channels=0)
    channel = ("input", "hr", 0)
    marks.update(_mark(Report("input", "hr", 0, 500, False, 9, 5)))
    marks.update(_mark(Report("input", "hr", 0, 300, True, 5, 5)))
    assert marks.channels[channel] == (500, False), "an idle report that saw less is stale"
    marks.update(_mark(Report("input", "hr", 0, 500, True, 9, 9)))
    assert marks.channels[channel] == (500, True)
    marks.update(_mark(Report("input", "hr", 0, 400, False, 12, 3)))
    assert marks.channels[channel] == (500, False), "written to since: busy, held back"
    marks.update(_mark(Report("input", "hr", 0, 450, False, 9, 7)))
    assert marks.channels[channel] == (500, False), "a report that saw less changes nothing"


def test_a_new_owner_that_finds_the_partition_at_its_end_is_idle_though_it_read_nothing() -> None:
    """The owner that read the last record was stopped while it waited to call the partition
    idle; the new owner starts at the committed end, reads nothing, so knows no event time.
    Were its word not taken, the partition would hold the event clock for good."""
    marks = Watermarks("event", ("hr",), (), device_channels=0, identity_channels=0)
    marks.update(_mark(Report("input", "hr", 0, 500, False, 1, 1)))
    marks.update(_mark(Report("input", "hr", 0, NEVER_US, True, 1, 1)))
    assert marks.channels[("input", "hr", 0)] == (500, True)
    marks.update(_mark(Report("input", "hr", 0, 500, False, 1, 1)))
    assert marks.channels[("input", "hr", 0)] == (500, True), "the old owner's late word too"


def test_an_inbox_report_behind_what_is_known_can_say_busy_but_never_idle() -> None:
    marks = Watermarks("event", ("hr",), (), device_channels=1, identity_channels=0)
    channel = ("device", "", 0)
    marks.update(_mark(Report("device", "", 0, 500, False)))
    marks.update(_mark(Report("device", "", 0, 300, True)))
    assert marks.channels[channel] == (500, False), "an old idle report is stale"
    marks.update(_mark(Report("device", "", 0, 500, True)))
    assert marks.channels[channel] == (500, True)
    marks.update(_mark(Report("device", "", 0, 400, False)))
    assert marks.channels[channel] == (500, False), "busy again: held back"
