"""Time in accessdrift is an integer count of microseconds since the Unix epoch, in UTC.

Integers compare and subtract exactly and cheaply on the hot path; these helpers convert
at the edges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

US_PER_S = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch for a timezone-aware datetime (exact, no float rounding)."""
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * US_PER_S + since.microseconds


def parse_us(text: str) -> int:
    """Microseconds since the epoch for an RFC 3339 timestamp with an offset or `Z`.

    Raises ValueError saying what is wrong.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use RFC 3339 with an offset, such as 2026-01-31T09:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no offset: add Z or +hh:mm")
    return to_us(moment)


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
