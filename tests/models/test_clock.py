"""Time at the edges: RFC 3339 in, microseconds inside, RFC 3339 with Z out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from accessdrift.models.clock import format_duration_s, format_us, from_us, parse_us, to_us


def test_microseconds_round_trip_exactly() -> None:
    moment = datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC)

    assert from_us(to_us(moment)) == moment


def test_offsets_become_utc_with_z() -> None:
    us = parse_us("2026-01-05T10:00:00+01:00")

    assert format_us(us) == "2026-01-05T09:00:00Z"
    assert to_us(datetime(2026, 1, 5, 9, tzinfo=timezone(timedelta(0)))) == us


def test_a_fraction_is_written_only_when_present() -> None:
    assert format_us(parse_us("2026-01-05T09:00:00.250Z")) == "2026-01-05T09:00:00.25Z"


@pytest.mark.parametrize(
    ("text", "message"), [("2026-01-05T09:00:00", "has no UTC offset"), ("soon", "invalid time")]
)
def test_parse_refuses_ambiguous_or_bad_times(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_us(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (900, "15m"), (3600, "1h"), (5400, "1h 30m"), (86400, "1d"), (97200, "1d 3h")],
)
def test_durations_read_well(seconds: float, text: str) -> None:
    assert format_duration_s(seconds) == text
