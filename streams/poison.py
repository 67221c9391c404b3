"""Poison records: what a broken or hostile source writes to an input topic, mixed into a history.

The fault tests and the poison benchmark mix them into a simulated organisation's events at a
known share: each must reach the dead-letter topic (and only there), none may change a finding,
and none of their bytes may reach a log. Every kind carries a marker (`MARKER` and its number)
wherever the payload can hold text, so a test can look for the payload where it must not be.

Not here: events dated implausibly far ahead. In event time they are judged against the latest
event read, which does not exist before the first one, so whether the first is rejected depends
on read order; they have tests of their own.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

MARKER: Final = "poison-payload-"


@dataclass(frozen=True)
class RawRecord:
    """A record as a producer sends it: the stream it is written to, key and value bytes (a
    value None is a tombstone)."""

    stream: str
    key: bytes
    value: bytes | None
    #: Which kind of poison (None: a valid event).
    poison: str | None = None


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _event(number: int, **fields: Any) -> dict[str, Any]:
    """An event of the poison record numbered `number`, marked, with `fields` on top."""
    return {
        "event_id": f"{MARKER}{number}",
        "occurred_at": "2026-01-05T10:00:00Z",
        "identity_id": f"{MARKER}{number}",
        **fields,
    }


def _status(number: int, **fields: Any) -> dict[str, Any]:
    return _event(number, **{"status": "active", **fields})


def _borrowed_grant(number: int) -> dict[str, Any]:
    return _event(number, system="github", entitlement="admin", action="borrowed")


def _without(value: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: item for key, item in value.items() if key != name}


#: Each kind: a record from its number.
KINDS: Final[dict[str, Callable[[int], tuple[str, bytes | None]]]] = {
    "not_json": lambda n: ("identity.status", f'{{"event_id": "{MARKER}{n}", '.encode()),
    "not_utf8": lambda n: ("entitlement.change", b"\xff\xfe" + f"{MARKER}{n}".encode()),
    "not_an_object": lambda n: ("device.posture", _json([f"{MARKER}{n}"])),
    "empty": lambda n: ("access.exception", b""),
    "tombstone": lambda n: ("identity.status", None),
    "missing_field": lambda n: ("identity.status", _json(_without(_status(n), "occurred_at"))),
    "wrong_type": lambda n: ("identity.status", _json(_status(n, status=7))),
    "unknown_value": lambda n: ("identity.status", _json(_status(n, status=f"{MARKER}{n}"))),
    "extra_field": lambda n: ("identity.status", _json(_status(n, email=f"{MARKER}{n}"))),
    "bad_time": lambda n: ("identity.status", _json(_status(n, occurred_at=f"{MARKER}{n}"))),
    "bad_grant": lambda n: ("entitlement.change", _json(_borrowed_grant(n))),
}


def record_of(event: dict[str, Any]) -> RawRecord:
    """A replay-format event as its producer sends it, keyed as the contract says: by the device
    for posture, else by the identity."""
    value = event["value"]
    key = value["device_id" if event["topic"] == "device.posture" else "identity_id"]
    return RawRecord(event["topic"], str(key).encode(), _json(value))


def mix(events: list[dict[str, Any]], share: float, seed: int) -> list[RawRecord]:
    """`events` (replay format) as records, with poison records at about `share` of the total,
    spread at random positions and cycling through every kind. The count of poison records is
    `sum(r.poison is not None for r in result)`."""
    chooser = random.Random(seed)
    kinds = sorted(KINDS)
    out: list[RawRecord] = []
    number = 0
    for event in events:
        out.append(record_of(event))
        if chooser.random() < share / (1 - share):
            kind = kinds[number % len(kinds)]
            stream, value = KINDS[kind](number)
            out.append(RawRecord(stream, f"{MARKER}{number}".encode(), value, kind))
            number += 1
    return out
