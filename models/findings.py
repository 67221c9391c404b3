"""What the engine reports: findings (opened, then resolved), offboarding evidence, and the end of
every obligation.

Records keep times as integer microseconds, so formatters never parse strings back. Their
canonical form for a SIEM is one stable JSON object per line (`encode_record`), with a
`record_type` naming which record it is, a fixed field order, every field always present (null
where it does not apply) and times as RFC 3339 UTC with `Z`.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

from accessdrift.models.clock import US_PER_S, format_us, parse_us
from accessdrift.models.text import json_safe
from accessdrift.models.vocabulary import (
    EntitlementKind,
    FindingKind,
    FindingStatus,
    IdentityKind,
    Outcome,
    Resolution,
    Severity,
    Trigger,
)


class FindingRecord(msgspec.Struct, frozen=True, kw_only=True):
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
    triggered_at_us: int
    deadline_us: int
    detected_at_us: int
    resolved_at_us: int | None
    trigger_event_id: str
    exception_id: str | None
    summary: str

    @property
    def time_to_revoke_s(self) -> float | None:
        """Seconds from the trigger to the change that resolved it (resolved records only)."""
        if self.resolved_at_us is None:
            return None
        return max(0, self.resolved_at_us - self.triggered_at_us) / US_PER_S


class RevokedEntitlement(msgspec.Struct, frozen=True, kw_only=True):
    """One entitlement a leaver held at termination, and when it was revoked."""

    system: str
    entitlement: str
    entitlement_kind: EntitlementKind
    privileged: bool
    deadline_us: int
    revoked_at_us: int
    within_window: bool
    finding_id: str | None


class OffboardingRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Evidence that every entitlement a terminated identity held has been revoked."""

    offboarding_id: str
    identity_id: str
    identity_kind: IdentityKind
    terminated_at_us: int
    trigger_event_id: str
    completed_at_us: int
    all_within_window: bool
    entitlements: tuple[RevokedEntitlement, ...]

    @property
    def revoked_late(self) -> int:
        """How many of the entitlements were revoked after their window."""
        return sum(1 for entry in self.entitlements if not entry.within_window)


Record = FindingRecord | OffboardingRecord


def happened_at_us(record: Record) -> int:
    """When the record happened: detection for an open finding, the landing change for a
    resolved one, completion for offboarding evidence."""
    if isinstance(record, OffboardingRecord):
        return record.completed_at_us
    if record.status == "resolved" and record.resolved_at_us is not None:
        return record.resolved_at_us
    return record.detected_at_us


def record_key(record: Record) -> str:
    """What identifies this record among all records: a finding id and its status (the open and
    the resolved record of one finding are two records), or the offboarding id."""
    if isinstance(record, OffboardingRecord):
        return record.offboarding_id
    return f"{record.finding_id}.{record.status}"


class ObligationEnded(msgspec.Struct, frozen=True, kw_only=True):
    """An obligation reached its end: met on time, met late (its finding resolved), withdrawn
    (never owed), or its exception expired with it unmet. The source of time-to-revoke metrics.

    `ended_at_us` is when what it asked for landed (`on_time`, `late`), the trigger's time
    (`withdrawn`) or the exception's expiry (`exception_expired`); `time_to_revoke_us` is the
    time from the trigger to the landing, for `on_time` and `late` only.
    """

    finding_id: str
    identity_id: str
    identity_kind: IdentityKind
    trigger: Trigger
    system: str | None
    entitlement: str | None
    entitlement_kind: EntitlementKind | None
    privileged: bool
    severity: Severity
    triggered_at_us: int
    deadline_us: int
    ended_at_us: int
    outcome: Outcome
    resolution: Resolution | None
    exception_id: str | None
    time_to_revoke_us: int | None


# -- the canonical JSON form ---------------------------------------------------------------------


class _FindingJson(msgspec.Struct, kw_only=True, tag_field="record_type", tag="finding"):
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


class _RevokedJson(msgspec.Struct, kw_only=True):
    system: str
    entitlement: str
    entitlement_kind: EntitlementKind
    privileged: bool
    deadline: str
    revoked_at: str
    within_window: bool
    finding_id: str | None


class _OffboardingJson(msgspec.Struct, kw_only=True, tag_field="record_type", tag="offboarding"):
    offboarding_id: str
    identity_id: str
    identity_kind: IdentityKind
    terminated_at: str
    trigger_event_id: str
    completed_at: str
    all_within_window: bool
    entitlements: tuple[_RevokedJson, ...]


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(_FindingJson | _OffboardingJson)


def _optional_time(moment_us: int | None) -> str | None:
    return None if moment_us is None else format_us(moment_us)


def _to_json(record: Record) -> _FindingJson | _OffboardingJson:
    if isinstance(record, FindingRecord):
        return _FindingJson(
            finding_id=record.finding_id,
            kind=record.kind,
            trigger=record.trigger,
            status=record.status,
            identity_id=record.identity_id,
            identity_kind=record.identity_kind,
            system=record.system,
            entitlement=record.entitlement,
            entitlement_kind=record.entitlement_kind,
            device_id=record.device_id,
            severity=record.severity,
            triggered_at=format_us(record.triggered_at_us),
            deadline=format_us(record.deadline_us),
            detected_at=format_us(record.detected_at_us),
            resolved_at=_optional_time(record.resolved_at_us),
            time_to_revoke_seconds=record.time_to_revoke_s,
            trigger_event_id=record.trigger_event_id,
            exception_id=record.exception_id,
            summary=record.summary,
        )
    return _OffboardingJson(
        offboarding_id=record.offboarding_id,
        identity_id=record.identity_id,
        identity_kind=record.identity_kind,
        terminated_at=format_us(record.terminated_at_us),
        trigger_event_id=record.trigger_event_id,
        completed_at=format_us(record.completed_at_us),
        all_within_window=record.all_within_window,
        entitlements=tuple(
            _RevokedJson(
                system=e.system,
                entitlement=e.entitlement,
                entitlement_kind=e.entitlement_kind,
                privileged=e.privileged,
                deadline=format_us(e.deadline_us),
                revoked_at=format_us(e.revoked_at_us),
                within_window=e.within_window,
                finding_id=e.finding_id,
            )
            for e in record.entitlements
        ),
    )


def _from_json(data: _FindingJson | _OffboardingJson) -> Record:
    if isinstance(data, _FindingJson):
        return FindingRecord(
            finding_id=data.finding_id,
            kind=data.kind,
            trigger=data.trigger,
            status=data.status,
            identity_id=data.identity_id,
            identity_kind=data.identity_kind,
            system=data.system,
            entitlement=data.entitlement,
            entitlement_kind=data.entitlement_kind,
            device_id=data.device_id,
            severity=data.severity,
            triggered_at_us=parse_us(data.triggered_at),
            deadline_us=parse_us(data.deadline),
            detected_at_us=parse_us(data.detected_at),
            resolved_at_us=None if data.resolved_at is None else parse_us(data.resolved_at),
            trigger_event_id=data.trigger_event_id,
            exception_id=data.exception_id,
            summary=data.summary,
        )
    return OffboardingRecord(
        offboarding_id=data.offboarding_id,
        identity_id=data.identity_id,
        identity_kind=data.identity_kind,
        terminated_at_us=parse_us(data.terminated_at),
        trigger_event_id=data.trigger_event_id,
        completed_at_us=parse_us(data.completed_at),
        all_within_window=data.all_within_window,
        entitlements=tuple(
            RevokedEntitlement(
                system=e.system,
                entitlement=e.entitlement,
                entitlement_kind=e.entitlement_kind,
                privileged=e.privileged,
                deadline_us=parse_us(e.deadline),
                revoked_at_us=parse_us(e.revoked_at),
                within_window=e.within_window,
                finding_id=e.finding_id,
            )
            for e in data.entitlements
        ),
    )


def encode_record(record: Record) -> bytes:
    """The record's canonical JSON, one line without the newline; equal records give equal
    bytes. U+2028, U+2029 and U+0085 are escaped so that no consumer splits a record."""
    return json_safe(_ENCODER.encode(_to_json(record)))


def decode_record(data: bytes | str) -> Record:
    """A record from its canonical JSON (as written by `encode_record`)."""
    return _from_json(_DECODER.decode(data))


def stable_id(*parts: str | None) -> str:
    """A deterministic 128-bit hex id of the parts: the same parts always give the same id, and
    different parts different ids (each part is length-prefixed, so no separator inside a name
    can make two lists of parts hash alike)."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if part is None:
            digest.update(b"\x00")
        else:
            data = part.encode()
            digest.update(b"\x01" + len(data).to_bytes(4, "big") + data)
    return digest.hexdigest()
