"""Event contract v1: the four input streams, validated with pydantic where JSON enters.

Each input record is one JSON object. Validation is strict: a timestamp is an RFC 3339 string
with an offset or `Z` (not a bare number some parsers take as Unix time), booleans are JSON
booleans, a key given twice is rejected (which `status` would win?), and an unknown field is
rejected (a misspelt `privileged` must not silently become a non-privileged grant). Error messages
name the field and never echo more than a little of a bad value, made printable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal

import jiter
from msgspec import UNSET
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from accessdrift.models.clock import timestamp_us
from accessdrift.models.errors import ContractError
from accessdrift.models.messages import (
    DevicePosture,
    EntitlementChange,
    ExceptionGrant,
    StatusChange,
)
from accessdrift.models.text import ECHO_LIMIT, echo, printable
from accessdrift.models.vocabulary import (
    Action,
    EntitlementKind,
    IdentityKind,
    IdentityStatus,
    Posture,
)

IDENTITY_STATUS: Final = "identity.status"
DEVICE_POSTURE: Final = "device.posture"
ENTITLEMENT_CHANGE: Final = "entitlement.change"
ACCESS_EXCEPTION: Final = "access.exception"
STREAMS: Final = (IDENTITY_STATUS, DEVICE_POSTURE, ENTITLEMENT_CHANGE, ACCESS_EXCEPTION)

Name = Annotated[str, Field(min_length=1, max_length=1024)]


#: A contract timestamp, as integer microseconds since the epoch (see `clock.timestamp_us`).
Timestamp = Annotated[int, BeforeValidator(timestamp_us)]


def _unique(ids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


class _Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    event_id: Name
    occurred_at_us: Timestamp = Field(alias="occurred_at")
    source: Name | None = None


#: `snapshot` (the default): the event states the whole state, and a field left out takes its
#: default (no `owner_id` unlinks the owner, no `identity_ids` unbinds every identity).
#: `partial`: only the fields present change; what standard signals (CAEP, RISC, SCIM) carry,
#: since each knows one thing about its subject.
Update = Literal["snapshot", "partial"]
_STATUS_FIELDS: Final = ("status", "identity_kind", "role", "owner_id")


class IdentityStatusEvent(_Event):
    """`identity.status`, keyed by `identity_id`: the identity's state after the change, whole
    (`update` `snapshot`) or only the fields present (`partial`)."""

    identity_id: Name
    update: Update = "snapshot"
    status: IdentityStatus | None = None
    identity_kind: IdentityKind = "human"
    role: Name | None = None
    owner_id: Name | None = None

    @model_validator(mode="after")
    def _complete_and_owner_fits_kind(self) -> IdentityStatusEvent:
        given = self.model_fields_set
        if self.update == "snapshot" and self.status is None:
            raise ValueError(
                'status is required in a snapshot (send "update": "partial" to change only '
                "the fields given)"
            )
        if self.update == "partial":
            if "status" in given and self.status is None:
                raise ValueError("status cannot be null; leave it out to keep it")
            if not given.intersection(_STATUS_FIELDS):
                raise ValueError(f"a partial update changes nothing: give one of {_STATUS_FIELDS}")
        kind_known = self.update == "snapshot" or "identity_kind" in given
        if self.owner_id is not None and kind_known and self.identity_kind == "human":
            raise ValueError("owner_id applies only to non-human identities; drop it for a human")
        if self.owner_id == self.identity_id:
            raise ValueError(
                "owner_id names the identity itself; an owner must be another identity"
            )
        return self

    def to_message(self) -> StatusChange:
        given = self.model_fields_set if self.update == "partial" else _STATUS_FIELDS
        return StatusChange(
            identity_id=self.identity_id,
            event_id=self.event_id,
            occurred_at_us=self.occurred_at_us,
            status=self.status if "status" in given and self.status is not None else UNSET,
            identity_kind=self.identity_kind if "identity_kind" in given else UNSET,
            role=self.role if "role" in given else UNSET,
            owner_id=self.owner_id if "owner_id" in given else UNSET,
        )


class DevicePostureEvent(_Event):
    """`device.posture`, keyed by `device_id`. `identity_ids` replaces the earlier binding; in a
    `partial` update, left out, it keeps it."""

    device_id: Name
    update: Update = "snapshot"
    posture: Posture
    identity_ids: Annotated[tuple[Name, ...], AfterValidator(_unique)] = ()

    def to_message(self) -> DevicePosture:
        keep = self.update == "partial" and "identity_ids" not in self.model_fields_set
        return DevicePosture(
            device_id=self.device_id,
            event_id=self.event_id,
            occurred_at_us=self.occurred_at_us,
            posture=self.posture,
            identity_ids=UNSET if keep else self.identity_ids,
        )


class EntitlementChangeEvent(_Event):
    """`entitlement.change`, keyed by `identity_id`: one grant or revoke."""

    identity_id: Name
    system: Name
    entitlement: Name
    action: Action
    kind: EntitlementKind = "role"
    privileged: bool = False
    device_id: Name | None = None
    requires_trusted_device: bool = False

    def to_message(self) -> EntitlementChange:
        return EntitlementChange(
            identity_id=self.identity_id,
            event_id=self.event_id,
            occurred_at_us=self.occurred_at_us,
            system=self.system,
            entitlement=self.entitlement,
            action=self.action,
            kind=self.kind,
            privileged=self.privileged,
            device_id=self.device_id,
            requires_trusted_device=self.requires_trusted_device,
        )


class AccessExceptionEvent(_Event):
    """`access.exception`, keyed by `identity_id`: an approved exception until `expires_at`."""

    exception_id: Name
    identity_id: Name
    system: Name | None = None
    entitlement: Name | None = None
    expires_at_us: Timestamp = Field(alias="expires_at")
    reason: Name
    approved_by: Name

    @model_validator(mode="after")
    def _expires_after_approval(self) -> AccessExceptionEvent:
        if self.expires_at_us <= self.occurred_at_us:
            raise ValueError("expires_at must be later than occurred_at")
        if self.entitlement is not None and self.system is None:
            raise ValueError("an exception naming an entitlement must also name its system")
        return self

    def to_message(self) -> ExceptionGrant:
        return ExceptionGrant(
            identity_id=self.identity_id,
            event_id=self.event_id,
            occurred_at_us=self.occurred_at_us,
            exception_id=self.exception_id,
            system=self.system,
            entitlement=self.entitlement,
            expires_at_us=self.expires_at_us,
            reason=self.reason,
            approved_by=self.approved_by,
        )


Event = IdentityStatusEvent | DevicePostureEvent | EntitlementChangeEvent | AccessExceptionEvent


class _Line(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _IdentityStatusLine(_Line):
    topic: Literal["identity.status"]
    value: IdentityStatusEvent


class _DevicePostureLine(_Line):
    topic: Literal["device.posture"]
    value: DevicePostureEvent


class _EntitlementChangeLine(_Line):
    topic: Literal["entitlement.change"]
    value: EntitlementChangeEvent


class _AccessExceptionLine(_Line):
    topic: Literal["access.exception"]
    value: AccessExceptionEvent


_LINE: Final = TypeAdapter[
    _IdentityStatusLine | _DevicePostureLine | _EntitlementChangeLine | _AccessExceptionLine
](
    Annotated[
        _IdentityStatusLine | _DevicePostureLine | _EntitlementChangeLine | _AccessExceptionLine,
        Field(discriminator="topic"),
    ]
)
_EVENT_OF_STREAM: Final[dict[str, TypeAdapter[Any]]] = {
    IDENTITY_STATUS: TypeAdapter(IdentityStatusEvent),
    DEVICE_POSTURE: TypeAdapter(DevicePostureEvent),
    ENTITLEMENT_CHANGE: TypeAdapter(EntitlementChangeEvent),
    ACCESS_EXCEPTION: TypeAdapter(AccessExceptionEvent),
}

_MESSAGES: Final[dict[str, str]] = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (not part of contract v1)",
    "union_tag_not_found": "missing 'topic'",
}


def _describe(errors: Sequence[ErrorDetails], prefix: str) -> str:
    parts: list[str] = []
    for error in errors[:3]:
        # Field names come from the input too (an unknown field): printable, and cut short.
        where = ".".join(
            printable(str(part), ECHO_LIMIT) for part in error["loc"] if part not in _TAG_LOCS
        )
        if error["type"] == "union_tag_invalid":
            tag = (error.get("ctx") or {}).get("tag", "?")
            parts.append(f"unknown stream {echo(tag)} (expected one of: {', '.join(STREAMS)})")
            continue
        if error["type"] == "json_invalid":
            parts.append(f"not valid JSON ({(error.get('ctx') or {}).get('error', 'parse error')})")
            continue
        message = _MESSAGES.get(error["type"], error["msg"])
        message = message.removeprefix("Value error, ")
        location = ".".join(part for part in (prefix, where) if part)
        parts.append(f"{location}: {message}" if location else message)
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts)


_TAG_LOCS: Final = frozenset(STREAMS)


_BOM: Final = "\ufeff".encode()
_DUPLICATE: Final = re.compile(r'duplicate key "(.*)" at line \d+ column \d+$', re.DOTALL)


def _as_bytes(data: str | bytes) -> bytes:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    # A byte-order mark is not JSON; some exporters write one at the start of a file.
    return raw[len(_BOM) :] if raw.startswith(_BOM) else raw


def _reject_duplicate_keys(data: bytes) -> None:
    """JSON parsers keep the last of two equal keys (`"status":"terminated","status":"active"`
    reads as active): a record that gives a field twice is refused instead."""
    try:
        jiter.from_json(data, catch_duplicate_keys=True)
    except ValueError as error:
        found = _DUPLICATE.search(str(error))
        key = echo(found[1]) if found else "a key"
        raise ContractError(
            "", f"{key} is given twice in one object; give each field once"
        ) from None


def decode_line(line: str | bytes) -> tuple[str, Event]:
    """Parse one replay line, `{"topic": <stream>, "value": {<event>}}`.

    Returns the stream name and the validated event. Raises ContractError saying what is wrong
    and where (`value.occurred_at: ...`).
    """
    data = _as_bytes(line)
    try:
        parsed = _LINE.validate_json(data)
    except ValidationError as error:
        raise ContractError("", _describe(error.errors(include_url=False), "")) from None
    _reject_duplicate_keys(data)
    return parsed.topic, parsed.value


def decode_event(stream: str, payload: str | bytes) -> Event:
    """Parse one record's value read from `stream` (the runtime's path: the topic names the stream).

    Raises ContractError for an unknown stream or a value that breaks the contract.
    """
    adapter = _EVENT_OF_STREAM.get(stream)
    if adapter is None:
        raise ContractError(
            "", f"unknown stream {echo(stream)} (expected one of: {', '.join(STREAMS)})"
        )
    data = _as_bytes(payload)
    try:
        event: Event = adapter.validate_json(data)
    except ValidationError as error:
        raise ContractError("", _describe(error.errors(include_url=False), "")) from None
    _reject_duplicate_keys(data)
    return event


__all__ = [
    "ACCESS_EXCEPTION",
    "DEVICE_POSTURE",
    "ENTITLEMENT_CHANGE",
    "IDENTITY_STATUS",
    "STREAMS",
    "AccessExceptionEvent",
    "DevicePostureEvent",
    "EntitlementChangeEvent",
    "Event",
    "IdentityStatusEvent",
    "decode_event",
    "decode_line",
]
