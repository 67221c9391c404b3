"""Per-key state the engine keeps: one IdentityState per identity, one DeviceState per device.

These are msgspec structs: cheap to build and update in place on the hot path, and encoded
losslessly (`encode_state`/`decode_state`) for a changelog or a snapshot.
"""

from __future__ import annotations

from typing import Final

import msgspec

from accessdrift.models.vocabulary import (
    EntitlementKind,
    IdentityKind,
    IdentityStatus,
    Posture,
    Severity,
    Trigger,
)

#: Obligation lifecycle. PENDING: the clock has not passed its deadline + grace (it may already
#: know that what it asks for landed late: `met_at_us` is set, and firing publishes the open and
#: the resolved record together). OPEN: a finding was published and is not resolved. DONE: met,
#: cancelled or resolved; kept while its trigger lives so that a late event cannot open it again.
PENDING: Final = 0
OPEN: Final = 1
DONE: Final = 2

NEVER_US: Final = -(2**62)


def grant_key(system: str, entitlement: str) -> str:
    """The key of an entitlement within one identity."""
    return f"{system}\x1f{entitlement}"


class Grant(msgspec.Struct, gc=False):
    """What the identity holds of one entitlement; versioned by (changed_at_us, event_id)."""

    system: str
    entitlement: str
    kind: EntitlementKind
    privileged: bool
    device_id: str | None
    requires_trusted_device: bool
    held: bool
    changed_at_us: int
    event_id: str
    #: Start of the latest continuous held interval (a re-grant while held does not move it).
    granted_at_us: int | None
    grant_event_id: str | None
    #: A grant_while_inactive obligation was opened for the current interval.
    flagged_inactive: bool = False

    def held_at(self, moment_us: int) -> bool:
        """Whether the latest held interval covers `moment_us`."""
        if self.granted_at_us is None or self.granted_at_us > moment_us:
            return False
        return self.held or self.changed_at_us > moment_us


class DeviceView(msgspec.Struct, gc=False):
    """What an identity knows of one device through DeviceSignal messages."""

    posture: Posture
    bound: bool
    changed_at_us: int
    event_id: str


class Waiver(msgspec.Struct, gc=False):
    """An approved access exception; `system`/`entitlement` None means any."""

    exception_id: str
    system: str | None
    entitlement: str | None
    approved_at_us: int
    expires_at_us: int
    event_id: str

    def covers(self, system: str | None, entitlement: str | None, deadline_us: int) -> bool:
        if not self.approved_at_us <= deadline_us < self.expires_at_us:
            return False
        if self.system is not None and self.system != system:
            return False
        return self.entitlement is None or self.entitlement == entitlement


class OwnedLink(msgspec.Struct, gc=False):
    """An owner's record of one non-human identity that names it as owner."""

    linked: bool
    changed_at_us: int
    event_id: str


class TriggerState(msgspec.Struct, gc=False):
    """A state change that opened obligations and is still in force."""

    trigger: Trigger
    event_id: str
    at_us: int
    #: device_untrusted: the device and its current untrusted posture.
    device_id: str | None = None
    posture: Posture | None = None
    #: Trigger-wide deadline where one applies (device_untrusted tightens it on escalation).
    deadline_us: int | None = None
    #: owner_departed: the owner that left.
    owner_id: str | None = None
    #: leaver: the offboarding record for the current set of obligations was emitted.
    evidence_sent: bool = False
    #: When the trigger's reason went away or what it asked for landed. An ended trigger is kept
    #: for the late-event horizon so that an event arriving late is still judged against it.
    ended_at_us: int | None = None


class Obligation(msgspec.Struct, gc=False):
    """One access change that must land by `deadline_us`; its key is its `finding_id`."""

    finding_id: str
    trigger_key: str | None
    trigger: Trigger
    trigger_event_id: str
    system: str | None
    entitlement: str | None
    entitlement_kind: EntitlementKind | None
    device_id: str | None
    privileged: bool
    triggered_at_us: int
    deadline_us: int
    severity: Severity
    #: Words the summary needs: the posture, the status, or the departed owner.
    context: str | None = None
    state: int = PENDING
    opened: bool = False
    detected_at_us: int | None = None
    exception_id: str | None = None
    #: When what it asks for landed (or its reason ended), and how.
    met_at_us: int | None = None
    resolution: str | None = None


class IdentityState(msgspec.Struct, gc=False):
    """Everything the engine knows about one identity. Only messages keyed by it change it."""

    identity_id: str
    identity_kind: IdentityKind = "human"
    status: IdentityStatus | None = None
    #: Version of the last applied status event.
    status_at_us: int = NEVER_US
    status_event_id: str = ""
    #: When the current status value began (a snapshot repeating it does not move this).
    status_since_us: int = NEVER_US
    status_since_event_id: str = ""
    #: Each change of status value (since_us, status), oldest first, back to the late-event
    #: horizon: what the status was when a late grant happened.
    transitions: list[tuple[int, IdentityStatus]] = msgspec.field(default_factory=list)
    role: str | None = None
    owner_id: str | None = None
    owner_since_us: int = NEVER_US
    #: The owner before the current one, and when it stopped being the owner: a termination
    #: signal from it that arrives late still counts for the time it owned the identity.
    previous_owner_id: str | None = None
    previous_owner_since_us: int = NEVER_US
    previous_owner_until_us: int = NEVER_US
    owner_status: IdentityStatus | None = None
    owner_status_at_us: int = NEVER_US
    owner_status_event_id: str = ""
    owned: dict[str, OwnedLink] = msgspec.field(default_factory=dict)
    grants: dict[str, Grant] = msgspec.field(default_factory=dict)
    devices: dict[str, DeviceView] = msgspec.field(default_factory=dict)
    waivers: dict[str, Waiver] = msgspec.field(default_factory=dict)
    triggers: dict[str, TriggerState] = msgspec.field(default_factory=dict)
    #: Obligations still PENDING or OPEN, by finding id: the only ones the clock can affect.
    obligations: dict[str, Obligation] = msgspec.field(default_factory=dict)
    #: DONE obligations of triggers still remembered, by finding id (evidence, and a guard
    #: against opening the same obligation twice).
    settled: dict[str, Obligation] = msgspec.field(default_factory=dict)


class DeviceState(msgspec.Struct, gc=False):
    """A device's posture and bound identities; versioned by (changed_at_us, event_id)."""

    device_id: str
    posture: Posture
    identity_ids: tuple[str, ...]
    changed_at_us: int
    event_id: str


_IDENTITY_DECODER: Final = msgspec.msgpack.Decoder(IdentityState)
_DEVICE_DECODER: Final = msgspec.msgpack.Decoder(DeviceState)
_ENCODER: Final = msgspec.msgpack.Encoder()


def encode_state(state: IdentityState | DeviceState) -> bytes:
    """Compact binary form of a state, for a changelog or snapshot."""
    return _ENCODER.encode(state)


def decode_identity_state(data: bytes) -> IdentityState:
    return _IDENTITY_DECODER.decode(data)


def decode_device_state(data: bytes) -> DeviceState:
    return _DEVICE_DECODER.decode(data)
