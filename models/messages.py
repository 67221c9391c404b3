"""Engine input messages: the contract's events in the engine's own cheap form, plus the messages
the engine sends between keys.

Every message but `DevicePosture` is keyed by `identity_id`: one identity's state changes only
through messages with its key, so the same engine runs in one process (replay) or partitioned by
identity across Kafka (the runtime). Times are microseconds since the epoch (see `clock`).
Each message carries a version, (`occurred_at_us`, `event_id`): a message older than the last one
applied to the same thing is stale; at the same time, messages apply in arrival order, and one
whose `event_id` was already applied is a repeat (see `state.Version`).
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from accessdrift.models.vocabulary import (
    Action,
    EntitlementKind,
    IdentityKind,
    IdentityStatus,
    Posture,
)


class StatusChange(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An identity's status after a change. A snapshot sets every field; a partial update (what a
    standard signal such as RISC `account-disabled` carries: nothing of role or owner) leaves the
    fields it does not know UNSET, and those keep their value (`role` None is "no role", not
    "unknown")."""

    identity_id: str
    event_id: str
    occurred_at_us: int
    status: IdentityStatus | UnsetType = UNSET
    identity_kind: IdentityKind | UnsetType = UNSET
    role: str | UnsetType | None = UNSET
    owner_id: str | UnsetType | None = UNSET


class EntitlementChange(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A grant or revoke of one entitlement, identified by (identity_id, system, entitlement)."""

    identity_id: str
    event_id: str
    occurred_at_us: int
    system: str
    entitlement: str
    action: Action
    kind: EntitlementKind
    privileged: bool
    device_id: str | None
    requires_trusted_device: bool


class ExceptionGrant(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An approved, time-boxed exception; `system`/`entitlement` None means any."""

    identity_id: str
    event_id: str
    occurred_at_us: int
    exception_id: str
    system: str | None
    entitlement: str | None
    expires_at_us: int
    reason: str
    approved_by: str


class DevicePosture(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A device's posture and the identities bound to it; keyed by `device_id`. `identity_ids`
    UNSET (a partial update, such as a CAEP `device-compliance-change`, which names no users)
    keeps the binding as it was."""

    device_id: str
    event_id: str
    occurred_at_us: int
    posture: Posture
    identity_ids: tuple[str, ...] | UnsetType = UNSET


class DeviceSignal(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Device to identity: the device's posture now, and whether the identity is bound to it."""

    identity_id: str
    event_id: str
    occurred_at_us: int
    device_id: str
    posture: Posture
    bound: bool


class OwnerLink(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Non-human identity to its owner: whether `nhi_id` is now owned by `identity_id`."""

    identity_id: str
    event_id: str
    occurred_at_us: int
    nhi_id: str
    linked: bool


class OwnerSignal(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Owner to a non-human identity it owns: the owner's status and when it took effect.

    Sent on every change of the owner's status, and as the answer to every link (status None
    when the owner is unknown to the engine), so that the non-human identity knows it has heard.
    """

    identity_id: str
    event_id: str
    occurred_at_us: int
    owner_id: str
    status: IdentityStatus | None


IdentityMessage = (
    StatusChange | EntitlementChange | ExceptionGrant | DeviceSignal | OwnerLink | OwnerSignal
)
InputMessage = StatusChange | EntitlementChange | ExceptionGrant | DevicePosture
AnyMessage = IdentityMessage | DevicePosture
