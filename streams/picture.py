"""One identity's current access picture, as the worker's API answers it: who it is, what it
holds, on which devices, what it still owes and by when, and which exceptions cover it.

Built from the identity's stored state alone (pure): the same state always gives the same
picture. Times are RFC 3339 UTC; the JSON form has a fixed field order.
"""

from __future__ import annotations

from typing import Final

import msgspec

from accessdrift.models.clock import format_us
from accessdrift.models.state import NEVER_US, IdentityState
from accessdrift.models.text import json_safe
from accessdrift.models.vocabulary import (
    EntitlementKind,
    IdentityKind,
    IdentityStatus,
    ObligationState,
    Posture,
    Severity,
    Trigger,
)


class DevicePicture(msgspec.Struct, frozen=True):
    device_id: str
    posture: Posture
    bound: bool
    trusted: bool
    since: str


class EntitlementPicture(msgspec.Struct, frozen=True):
    system: str
    entitlement: str
    kind: EntitlementKind
    privileged: bool
    device_id: str | None
    requires_trusted_device: bool
    granted_at: str | None


class ObligationPicture(msgspec.Struct, frozen=True):
    finding_id: str
    trigger: Trigger
    state: ObligationState
    severity: Severity
    system: str | None
    entitlement: str | None
    device_id: str | None
    triggered_at: str
    deadline: str
    #: The exception deferring it, if one covers its deadline.
    exception_id: str | None


class ExceptionPicture(msgspec.Struct, frozen=True):
    exception_id: str
    system: str | None
    entitlement: str | None
    approved_at: str
    expires_at: str
    in_force: bool


class AccessPicture(msgspec.Struct, frozen=True):
    identity_id: str
    identity_kind: IdentityKind
    status: IdentityStatus | None
    status_since: str | None
    role: str | None
    owner_id: str | None
    #: Non-human identities naming this one as their owner.
    owns: list[str]
    devices: list[DevicePicture]
    entitlements: list[EntitlementPicture]
    obligations: list[ObligationPicture]
    exceptions: list[ExceptionPicture]
    #: The clock the picture was taken at (the partition's watermark).
    as_of: str | None


_ENCODER: Final = msgspec.json.Encoder()


def _time(moment_us: int | None) -> str | None:
    return None if moment_us is None or moment_us == NEVER_US else format_us(moment_us)


def access_picture(state: IdentityState, clock_us: int) -> AccessPicture:
    """The picture of `state` at `clock_us`, entries in a stable order."""
    obligations = []
    for ob in sorted(state.obligations.values(), key=lambda o: (o.deadline_us, o.finding_id)):
        covering = [
            w.exception_id
            for w in state.waivers.values()
            if w.covers(ob.system, ob.entitlement, ob.deadline_us)
        ]
        obligations.append(
            ObligationPicture(
                ob.finding_id,
                ob.trigger,
                ob.state,
                ob.severity,
                ob.system,
                ob.entitlement,
                ob.device_id,
                format_us(ob.triggered_at_us),
                format_us(ob.deadline_us),
                ob.exception_id or (min(covering) if covering else None),
            )
        )
    return AccessPicture(
        identity_id=state.identity_id,
        identity_kind=state.identity_kind,
        status=state.status,
        status_since=_time(state.status_since_us),
        role=state.role,
        owner_id=state.owner_id,
        owns=sorted(nhi for nhi, link in state.owned.items() if link.linked),
        devices=[
            DevicePicture(
                device_id, view.posture, view.bound, view.trusted, format_us(view.since_us)
            )
            for device_id, view in sorted(state.devices.items())
            if view.bound
        ],
        entitlements=[
            EntitlementPicture(
                g.system,
                g.entitlement,
                g.kind,
                g.privileged,
                g.device_id,
                g.requires_trusted_device,
                _time(g.granted_at_us),
            )
            for g in sorted(state.grants.values(), key=lambda g: (g.system, g.entitlement))
            if g.held
        ],
        obligations=obligations,
        exceptions=[
            ExceptionPicture(
                w.exception_id,
                w.system,
                w.entitlement,
                format_us(w.approved_at_us),
                format_us(w.expires_at_us),
                w.approved_at_us <= clock_us < w.expires_at_us,
            )
            for w in sorted(state.waivers.values(), key=lambda w: w.exception_id)
            if w.expires_at_us > clock_us
        ],
        as_of=_time(clock_us),
    )


def encode_picture(picture: AccessPicture) -> bytes:
    return json_safe(_ENCODER.encode(picture))
