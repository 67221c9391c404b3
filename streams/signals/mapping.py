"""What every mapping shares: the contract event it produces, subjects to keys, event times.

A mapping returns `Signal`s, contract events as JSON objects; the receiver validates each one
with the contract's own decoder before producing it, so no mapping (and no hostile payload
travelling through one) can put on a topic what the worker would dead-letter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.text import echo
from accessdrift.streams.signals.sets import SecurityEvent, SetError
from accessdrift.streams.signals.settings import SUBJECT_FIELDS, Transmitter

#: A NumericDate above this is in milliseconds (CAEP 1.0's own examples write
#: `event_timestamp` in milliseconds; 10^11 seconds is the year 5138).
_MILLISECONDS_FROM: Final = 10**11


@dataclass(frozen=True)
class Signal:
    """One contract event to produce: its stream, its key, its JSON object."""

    stream: str
    key: str
    value: dict[str, Any]


@dataclass(frozen=True)
class Keys:
    """The contract keys a subject maps to (either may be absent)."""

    identity_id: str | None
    device_id: str | None


def _simple(subject: Mapping[str, Any], templates: Mapping[Any, str]) -> str | None:
    format_name = subject.get("format")
    if format_name == "aliases":
        for alias in subject.get("identifiers") or ():
            if isinstance(alias, dict) and (key := _simple(alias, templates)) is not None:
                return key
        return None
    if not isinstance(format_name, str) or format_name not in templates:
        return None
    values = {
        name: value
        for name in SUBJECT_FIELDS[format_name]
        if isinstance(value := subject.get(name), str) and value
    }
    if format_name == "scim" and "uri" in values:
        values["id"] = values["uri"].rstrip("/").rsplit("/", 1)[-1]
    try:
        # A template naming a field this subject lacks maps it to nothing, never to "None".
        return templates[format_name].format_map(values) or None
    except KeyError:
        return None


def subject_keys(subject: Mapping[str, Any] | None, transmitter: Transmitter) -> Keys:
    """The identity and device a subject names, through the transmitter's templates. A complex
    subject (CAEP: `user`, `device`, `session`, ...) maps its `user` and `device` members."""
    if subject is None:
        return Keys(None, None)
    identity_templates = transmitter.subjects.identity
    device_templates = transmitter.subjects.device
    user, device = subject.get("user"), subject.get("device")
    if subject.get("format") == "complex" or isinstance(user, dict) or isinstance(device, dict):
        return Keys(
            _simple(user, identity_templates) if isinstance(user, dict) else None,
            _simple(device, device_templates) if isinstance(device, dict) else None,
        )
    return Keys(_simple(subject, identity_templates), _simple(subject, device_templates))


def event_subject(body: Mapping[str, Any], event: SecurityEvent) -> Mapping[str, Any] | None:
    """The subject of one event: its own `subject` (RISC 1.0, CAEP drafts), else the SET's
    `sub_id` (SSF 1.0)."""
    own = body.get("subject")
    return own if isinstance(own, dict) else event.subject


def need_identity(keys: Keys, event_type: str) -> str:
    if keys.identity_id is None:
        raise SetError(
            "invalid_request",
            f"{short_name(event_type)}: the subject names no user this receiver maps; add a "
            "subjects.identity template for its format",
        )
    return keys.identity_id


def occurred_at(body: Mapping[str, Any], event: SecurityEvent) -> str:
    """When it happened, as contract time: `event_timestamp`, else `toe`, else `iat`."""
    for value in (body.get("event_timestamp"), event.toe_s):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            seconds = value / 1000 if value >= _MILLISECONDS_FROM else value
            return format_us(int(seconds * US_PER_S))
    return format_us(event.issued_at_s * US_PER_S)


def short_name(event_type: str) -> str:
    """`https://schemas.openid.net/secevent/risc/event-type/account-purged` → `account-purged`,
    `urn:ietf:params:SCIM:event:prov:create:full` → `prov:create:full`."""
    if "/event-type/" in event_type:
        return event_type.rsplit("/event-type/", 1)[1]
    return event_type.split(":event:", 1)[-1] if ":event:" in event_type else echo(event_type)


def event_id(event: SecurityEvent, event_type: str) -> str:
    """The contract `event_id`: the SET's `jti` and the event's type, stable across retries."""
    return f"{event.jti}/{short_name(event_type)}"


def base(
    stream: str,
    key_field: str,
    key: str,
    event: SecurityEvent,
    event_type: str,
    body: Mapping[str, Any],
    transmitter: Transmitter,
    **fields: Any,
) -> Signal:
    value = {
        "event_id": event_id(event, event_type),
        "occurred_at": occurred_at(body, event),
        "source": transmitter.name,
        key_field: key,
        **fields,
    }
    return Signal(stream, key, value)
