"""The hot path's decoder: contract v1 straight into engine messages, at about half the cost.

The pydantic models in `models/events.py` are the contract: the one published schema, and the
only source of error messages. This module mirrors them with msgspec structs (strict types,
unknown fields refused, the same lengths, vocabularies and cross-field rules) and builds engine
messages without the pydantic objects in between. Anything it does not accept is handed to the
pydantic path, which either raises the contract's error or, should the two ever disagree, decides
instead: so what is rejected, and how, is always pydantic's word. A hypothesis differential test
(`tests/models/test_decoding.py`) holds the two to accepting the same inputs with the same
resulting messages.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final, Literal

import jiter
import msgspec

from accessdrift.models.clock import timestamp_us
from accessdrift.models.errors import ContractError
from accessdrift.models.events import (
    ACCESS_EXCEPTION,
    DEVICE_POSTURE,
    ENTITLEMENT_CHANGE,
    IDENTITY_STATUS,
    decode_event,
    decode_line,
)
from accessdrift.models.messages import (
    DevicePosture,
    EntitlementChange,
    ExceptionGrant,
    InputMessage,
    StatusChange,
)
from accessdrift.models.vocabulary import (
    Action,
    EntitlementKind,
    IdentityKind,
    IdentityStatus,
    Posture,
)

#: As `events.Name`: 1 to 1024 characters.
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
_BOM: Final = "\ufeff".encode()


class _Value(msgspec.Struct, forbid_unknown_fields=True):
    event_id: _Name
    occurred_at: str


class _Status(_Value, kw_only=True):
    identity_id: _Name
    status: IdentityStatus
    source: _Name | None = None
    identity_kind: IdentityKind = "human"
    role: _Name | None = None
    owner_id: _Name | None = None


class _Posture(_Value, kw_only=True):
    device_id: _Name
    posture: Posture
    source: _Name | None = None
    identity_ids: tuple[_Name, ...] = ()


class _Change(_Value, kw_only=True):
    identity_id: _Name
    system: _Name
    entitlement: _Name
    action: Action
    source: _Name | None = None
    kind: EntitlementKind = "role"
    privileged: bool = False
    device_id: _Name | None = None
    requires_trusted_device: bool = False


class _Exception(_Value, kw_only=True):
    exception_id: _Name
    identity_id: _Name
    expires_at: str
    reason: _Name
    approved_by: _Name
    source: _Name | None = None
    system: _Name | None = None
    entitlement: _Name | None = None


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    topic: Literal["identity.status", "device.posture", "entitlement.change", "access.exception"]
    value: msgspec.Raw


class _NotFastError(Exception):
    """The fast path does not accept the input: the contract's own path decides."""


def _status(v: _Status) -> StatusChange:
    if v.owner_id is not None and (v.identity_kind == "human" or v.owner_id == v.identity_id):
        raise _NotFastError
    return StatusChange(
        v.identity_id,
        v.event_id,
        timestamp_us(v.occurred_at),
        v.status,
        v.identity_kind,
        v.role,
        v.owner_id,
    )


def _posture(v: _Posture) -> DevicePosture:
    return DevicePosture(
        v.device_id,
        v.event_id,
        timestamp_us(v.occurred_at),
        v.posture,
        tuple(dict.fromkeys(v.identity_ids)),
    )


def _change(v: _Change) -> EntitlementChange:
    return EntitlementChange(
        v.identity_id,
        v.event_id,
        timestamp_us(v.occurred_at),
        v.system,
        v.entitlement,
        v.action,
        v.kind,
        v.privileged,
        v.device_id,
        v.requires_trusted_device,
    )


def _exception(v: _Exception) -> ExceptionGrant:
    occurred_at_us = timestamp_us(v.occurred_at)
    expires_at_us = timestamp_us(v.expires_at)
    if expires_at_us <= occurred_at_us or (v.entitlement is not None and v.system is None):
        raise _NotFastError
    return ExceptionGrant(
        v.identity_id,
        v.event_id,
        occurred_at_us,
        v.exception_id,
        v.system,
        v.entitlement,
        expires_at_us,
        v.reason,
        v.approved_by,
    )


_LINE: Final = msgspec.json.Decoder(_Line)
_STATUS: Final = msgspec.json.Decoder(_Status)
_POSTURE: Final = msgspec.json.Decoder(_Posture)
_CHANGE: Final = msgspec.json.Decoder(_Change)
_EXCEPTION: Final = msgspec.json.Decoder(_Exception)
_VALUE: Final[dict[str, Callable[[bytes | msgspec.Raw], InputMessage]]] = {
    IDENTITY_STATUS: lambda data: _status(_STATUS.decode(data)),
    DEVICE_POSTURE: lambda data: _posture(_POSTURE.decode(data)),
    ENTITLEMENT_CHANGE: lambda data: _change(_CHANGE.decode(data)),
    ACCESS_EXCEPTION: lambda data: _exception(_EXCEPTION.decode(data)),
}


def _fast(stream: str, value: bytes | msgspec.Raw) -> InputMessage:
    try:
        return _VALUE[stream](value)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        raise _NotFastError from None


def _no_duplicate_keys(data: bytes) -> None:
    """msgspec keeps the last of two equal keys; the contract refuses them (see events.py)."""
    try:
        jiter.from_json(data, catch_duplicate_keys=True)
    except ValueError:
        raise _NotFastError from None


def _unbom(data: str | bytes) -> bytes:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return raw[len(_BOM) :] if raw.startswith(_BOM) else raw


def decode_message_line(line: str | bytes) -> tuple[str, InputMessage]:
    """One replay line as (stream, engine message); raises ContractError as `decode_line` does."""
    data = _unbom(line)
    try:
        parsed = _LINE.decode(data)
        message = _fast(parsed.topic, parsed.value)
        _no_duplicate_keys(data)
    except (_NotFastError, msgspec.DecodeError, msgspec.ValidationError):
        stream, event = decode_line(data)
        return stream, event.to_message()
    return parsed.topic, message


def decode_message(stream: str, payload: str | bytes | None) -> InputMessage:
    """One record's value read from `stream` as an engine message; raises ContractError as
    `decode_event` does (and for a record without a value: a tombstone is not an event)."""
    if payload is None:
        raise ContractError("", "the record has no value (a tombstone); events are never deleted")
    data = _unbom(payload)
    try:
        if stream not in _VALUE:
            raise _NotFastError
        message = _fast(stream, data)
        _no_duplicate_keys(data)
    except _NotFastError:
        return decode_event(stream, data).to_message()
    return message
