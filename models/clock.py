"""Time in accessdrift is an integer count of microseconds since the Unix epoch, in UTC.

Integers compare and subtract exactly and cheaply on the hot path; these helpers convert
at the edges. Every time the contract accepts lies in [EARLIEST, LATEST): far enough from
the ends of the calendar that a deadline (time + window + grace, each bounded) can always be
written back as RFC 3339.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

US_PER_S: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)
#: RFC 3339 date-time (`T`, `t` or a space between date and time; fraction optional). The offset
#: is optional here only so that a time without one gets its own, clearer message.
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?"
)
SHAPE_MESSAGE: Final = "expected an RFC 3339 timestamp such as 2026-01-31T09:00:00Z"
RANGE_MESSAGE: Final = "timestamp out of range: accessdrift accepts times from 1900 to 8999"
#: The longest window, grace or tolerance accepted: ten years.
MAX_DURATION_S: Final = 3650 * 86_400


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch for a timezone-aware datetime (exact, no float rounding)."""
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * US_PER_S + since.microseconds


def in_range(moment: datetime) -> bool:
    return EARLIEST <= moment < LATEST


LATEST_US: Final = to_us(LATEST)


NO_OFFSET_MESSAGE: Final = "timestamp has no UTC offset; write it as RFC 3339 with Z or +hh:mm"


def timestamp_us(value: object) -> int:
    """Microseconds since the epoch for a contract timestamp: an RFC 3339 string with an offset
    or `Z`, between 1900 and 8999. Raises ValueError with one of the messages above."""
    if not isinstance(value, str) or _RFC3339.fullmatch(value) is None:
        raise ValueError(SHAPE_MESSAGE)
    if value[10] != "T" or value[-1] == "z":
        value = value.upper().replace(" ", "T")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a valid date and time; {SHAPE_MESSAGE}") from None
    if moment.tzinfo is None:
        raise ValueError(NO_OFFSET_MESSAGE)
    if not in_range(moment):
        raise ValueError(RANGE_MESSAGE)
    return to_us(moment)


def parse_us(text: str) -> int:
    """Microseconds since the epoch for an RFC 3339 timestamp with an offset or `Z`.

    Raises ValueError naming the text and saying what is wrong.
    """
    try:
        return timestamp_us(text)
    except ValueError as error:
        raise ValueError(f"invalid time {text!r}: {error}") from None


def from_us(moment_us: int) -> datetime:
    """The UTC datetime for a count of microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=moment_us)


def format_us(moment_us: int) -> str:
    """RFC 3339 in UTC with a `Z`; the fraction is written only when it is not zero."""
    moment = from_us(moment_us)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def format_duration_s(duration_s: float) -> str:
    """A short human form of a duration: `45s`, `15m`, `1h 30m`, `7d`, `2d 3h`."""
    seconds = round(duration_s)
    if seconds < 60:
        return f"{seconds}s"
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])
