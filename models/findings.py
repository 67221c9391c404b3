"""Output records: findings (opened, then resolved) and offboarding evidence.

Both are stable JSON objects, one per line, with a `record_type` naming which. Field order is
fixed; every field is always present (null where it does not apply), so a SIEM can map the schema
once. Times are RFC 3339 UTC with `Z`.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from accessdrift.models.clock import US_PER_S, format_duration_s, format_us
from accessdrift.models.state import Obligation
from accessdrift.models.vocabulary import (
    FINDING_KIND_OF,
    EntitlementKind,
    FindingKind,
    FindingStatus,
    IdentityKind,
    Severity,
    Trigger,
)


class FindingRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="record_type", tag="finding"
):
    """One change of a finding's status; the open and the resolved record share `finding_id`."""

    finding_id: str
    kind: FindingKind
    trigger: Trigger
    status: FindingStatus
    identity_id: str
    identity_kind: IdentityKind
    system: str | None
    entitlement: str | None
    entitlement_kind: EntitlementKind | None
    device_id: str | None
    severity: Severity
    triggered_at: str
    deadline: str
    detected_at: str
    resolved_at: str | None
    time_to_revoke_seconds: float | None
    trigger_event_id: str
    exception_id: str | None
    summary: str


class RevokedEntitlement(msgspec.Struct, frozen=True, kw_only=True):
    """One entitlement a leaver held at termination, and when it was revoked."""

    system: str
    entitlement: str
    entitlement_kind: EntitlementKind
    privileged: bool
    deadline: str
    revoked_at: str
    within_window: bool
    finding_id: str | None


class OffboardingRecord(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="record_type", tag="offboarding"
):
    """Evidence that every entitlement a terminated identity held has been revoked."""

    offboarding_id: str
    identity_id: str
    identity_kind: IdentityKind
    terminated_at: str
    trigger_event_id: str
    completed_at: str
    all_within_window: bool
    entitlements: tuple[RevokedEntitlement, ...]


Record = FindingRecord | OffboardingRecord

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(Record)


def encode_record(record: Record) -> bytes:
    """The record as one line of compact JSON, no newline; equal records give equal bytes."""
    return _ENCODER.encode(record)


def decode_record(data: bytes | str) -> Record:
    """A record from its JSON line (as written by `encode_record`)."""
    record: Record = _DECODER.decode(data)
    return record


def stable_id(*parts: str | None) -> str:
    """A deterministic 128-bit hex id of the parts (the same input always gives the same id)."""
    text = "\x1f".join("" if part is None else part for part in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_TRIGGER_WORD: Final[dict[Trigger, str]] = {
    "leaver": "termination",
    "suspension": "suspension",
    "mover": "role change",
    "device_untrusted": "device change",
    "owner_departed": "owner's termination",
    "joiner": "activation",
    "grant_while_inactive": "grant",
}


def _access(ob: Obligation) -> str:
    privileged = "privileged " if ob.privileged else ""
    return f"{privileged}{ob.entitlement_kind} {ob.entitlement} in {ob.system}"


def _open_summary(ob: Obligation, identity_id: str, identity_kind: IdentityKind) -> str:
    at = format_us(ob.triggered_at_us)
    window = format_duration_s((ob.deadline_us - ob.triggered_at_us) / US_PER_S)
    match ob.trigger:
        case "leaver":
            text = (
                f"{identity_id} was terminated at {at} but still holds {_access(ob)} "
                f"past the {window} deadline; revoke it."
            )
        case "suspension":
            text = (
                f"{identity_id} was suspended at {at} but still holds {_access(ob)} "
                f"past the {window} deadline; revoke it."
            )
        case "mover":
            text = (
                f"{identity_id} changed role at {at} but keeps {_access(ob)} from before the "
                f"change past the {window} review deadline; revoke or re-approve it."
            )
        case "device_untrusted":
            text = (
                f"Device {ob.device_id} of {identity_id} became {ob.context} at {at} but "
                f"{_access(ob)} is still live past the {window} deadline; revoke it."
            )
        case "owner_departed":
            kind = identity_kind.replace("_", " ")
            text = (
                f"The owner {ob.context} of {kind} {identity_id} was terminated at {at} and no "
                f"active owner took over within {window}; assign an owner or retire it."
            )
        case "joiner":
            text = (
                f"{identity_id} became active at {at} and has no compliant device after "
                f"{window}; enrol a device."
            )
        case "grant_while_inactive":
            text = (
                f"{_access(ob)} was granted to {identity_id} at {at} while it was "
                f"{ob.context}; revoke it."
            )
    if ob.exception_id is not None:
        text += f" Exception {ob.exception_id} covered it until it expired."
    return text


def _what_landed(ob: Obligation, identity_id: str, resolution: str) -> str:
    """What happened that resolved the finding, as the start of a sentence."""
    match resolution:
        case "revoked":
            return f"{_access(ob)} of {identity_id} was revoked"
        case "regranted":
            return f"{_access(ob)} of {identity_id} was re-approved"
        case "trusted_device":
            return f"{identity_id} has a compliant device"
        case "reowned":
            return f"{identity_id} has an active owner"
        case "retired":
            return f"{identity_id} was terminated"
        case "withdrawn":
            return f"{_access(ob)} of {identity_id} turned out to be revoked before the trigger"
        case "reactivated":
            return f"{identity_id} turned out to be active again when {_access(ob)} was granted"
    match ob.trigger:
        case "leaver" | "suspension":
            return f"{identity_id} is active again"
        case "mover":
            return f"{identity_id} was terminated and offboarding took over"
        case "device_untrusted":
            return f"device {ob.device_id} is compliant again"
        case "joiner":
            return f"{identity_id} is no longer active"
        case _:
            return f"the owner {ob.context} of {identity_id} is active again"


def _resolved_summary(ob: Obligation, identity_id: str, resolution: str) -> str:
    assert ob.met_at_us is not None
    after = format_duration_s(max(0, ob.met_at_us - ob.triggered_at_us) / US_PER_S)
    window = format_duration_s((ob.deadline_us - ob.triggered_at_us) / US_PER_S)
    return (
        f"Resolved: {_what_landed(ob, identity_id, resolution)} as of "
        f"{format_us(ob.met_at_us)}, {after} after the {_TRIGGER_WORD[ob.trigger]} "
        f"(window {window})."
    )


def finding_record(
    ob: Obligation,
    identity_id: str,
    identity_kind: IdentityKind,
    resolution: str | None = None,
) -> FindingRecord:
    """The record for an obligation that is open (`resolution` None) or just resolved."""
    assert ob.detected_at_us is not None
    resolved = resolution is not None
    resolved_at_us = ob.met_at_us if resolved else None
    return FindingRecord(
        finding_id=ob.finding_id,
        kind=FINDING_KIND_OF[ob.trigger],
        trigger=ob.trigger,
        status="resolved" if resolved else "open",
        identity_id=identity_id,
        identity_kind=identity_kind,
        system=ob.system,
        entitlement=ob.entitlement,
        entitlement_kind=ob.entitlement_kind,
        device_id=ob.device_id,
        severity=ob.severity,
        triggered_at=format_us(ob.triggered_at_us),
        deadline=format_us(ob.deadline_us),
        detected_at=format_us(ob.detected_at_us),
        resolved_at=None if resolved_at_us is None else format_us(resolved_at_us),
        time_to_revoke_seconds=(
            None
            if resolved_at_us is None
            else max(0, resolved_at_us - ob.triggered_at_us) / US_PER_S
        ),
        trigger_event_id=ob.trigger_event_id,
        exception_id=ob.exception_id,
        summary=(
            _resolved_summary(ob, identity_id, resolution)
            if resolution is not None
            else _open_summary(ob, identity_id, identity_kind)
        ),
    )
