"""Per-key state the engine keeps: one IdentityState per identity, one DeviceState per device.

These are msgspec structs: cheap to build and update in place on the hot path, and encoded
losslessly (`encode_state`/`decode_state`) for a changelog or a snapshot.

Everything an identity accumulates is either current fact (what it holds now, one entry per
entitlement, device or exception) or history kept for judging late events, and history is
bounded twice: by the late-event horizon and by a count (see the engine's `Limits`). The
indexes (`in_force`, `by_grant`, the deadline heap, the trusted-device heap) are there so that
no step scans everything an identity has.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from accessdrift.models.vocabulary import (
    EntitlementKind,
    IdentityKind,
    IdentityStatus,
    ObligationState,
    Posture,
    Resolution,
    Severity,
    Trigger,
)

NEVER_US: Final = -(2**62)

#: What became of a message: applied; a repeat of one already applied (the same event id at the
#: same time); or stale, older than what is already known of the thing it is about.
Admission = Literal["applied", "repeat", "stale"]
Ignored = Literal["repeat", "stale"]

#: A set of finding ids that iterates in insertion order (a dict with no values): output that
#: depends on iteration order stays the same from run to run, which a hash-ordered set is not.
IdSet = dict[str, None]


def compose_key(*parts: str) -> str:
    """One string key for several names, collision-free by construction: every part but the
    last is length-prefixed, so no character inside a name can make two keys equal."""
    head = "".join(f"{len(part)}:{part}" for part in parts[:-1])
    return head + parts[-1]


def grant_key(system: str, entitlement: str) -> str:
    """The key of an entitlement within one identity (`compose_key` of the two, inlined: it is
    on the hot path)."""
    return f"{len(system)}:{system}{entitlement}"


class Version(msgspec.Struct, gc=False, array_like=True):
    """When a thing last changed, and the events applied at exactly that time.

    An event older than `at_us` is stale. At the same time, events apply in arrival order (a
    file's line order, a partition's offset order): one whose id was already applied at that
    time is a repeat, any other is newer.
    """

    at_us: int = NEVER_US
    event_ids: list[str] = msgspec.field(default_factory=list)

    def admit(self, at_us: int, event_id: str) -> Admission:
        """Record the event if it is newer (`applied`); else say it is a `repeat` or `stale`."""
        if at_us > self.at_us:
            self.at_us = at_us
            self.event_ids = [event_id]
            return "applied"
        if at_us < self.at_us:
            return "stale"
        if event_id in self.event_ids:
            return "repeat"
        self.event_ids.append(event_id)
        return "applied"


class Grant(msgspec.Struct, gc=False, omit_defaults=True):
    """What the identity holds of one entitlement."""

    system: str
    entitlement: str
    kind: EntitlementKind
    privileged: bool
    device_id: str | None
    requires_trusted_device: bool
    held: bool
    version: Version
    #: Start of the latest continuous held interval (a re-grant while held does not move it).
    granted_at_us: int | None
    grant_event_id: str | None
    #: Start of the current not-held period (a repeated revoke does not move it); None while held.
    revoked_at_us: int | None = None
    #: A grant_while_inactive obligation was opened for the current interval.
    flagged_inactive: bool = False

    def held_at(self, moment_us: int) -> bool:
        """Whether the latest held interval covers `moment_us`."""
        if self.granted_at_us is None or self.granted_at_us > moment_us:
            return False
        return self.held or (self.revoked_at_us is not None and self.revoked_at_us > moment_us)


class DeviceView(msgspec.Struct, gc=False, omit_defaults=True):
    """What an identity knows of one device through DeviceSignal messages."""

    posture: Posture
    bound: bool
    #: When this posture and binding began.
    since_us: int
    version: Version

    @property
    def trusted(self) -> bool:
        return self.bound and self.posture == "compliant"


class Waiver(msgspec.Struct, gc=False, omit_defaults=True):
    """An approved access exception; `system`/`entitlement` None means any."""

    exception_id: str
    system: str | None
    entitlement: str | None
    approved_at_us: int
    expires_at_us: int
    version: Version

    def covers(self, system: str | None, entitlement: str | None, deadline_us: int) -> bool:
        if not self.approved_at_us <= deadline_us < self.expires_at_us:
            return False
        if self.system is not None and self.system != system:
            return False
        return self.entitlement is None or self.entitlement == entitlement


class OwnedLink(msgspec.Struct, gc=False, omit_defaults=True):
    """An owner's record of one non-human identity that names it (or named it) as owner."""

    linked: bool
    changed_at_us: int
    version: Version


class TriggerState(msgspec.Struct, gc=False, omit_defaults=True):
    """A state change that opened obligations; kept after it ends, for the late-event horizon."""

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
    #: When the trigger's reason went away or what it asked for landed.
    ended_at_us: int | None = None
    #: Finding ids of its obligations: still live, and settled.
    live: IdSet = msgspec.field(default_factory=dict)
    settled: IdSet = msgspec.field(default_factory=dict)


class Obligation(msgspec.Struct, gc=False, omit_defaults=True):
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
    #: Words the summary needs: the posture, the status or the departed owner.
    context: str | None = None
    #: The grant event that began the held interval the trigger saw (per-entitlement
    #: obligations): whether a later change is about that interval or a new one.
    interval_event_id: str | None = None
    state: ObligationState = "pending"
    opened: bool = False
    detected_at_us: int | None = None
    exception_id: str | None = None
    #: When what it asks for landed (or its reason ended), and how; `final` when no later event
    #: can change that (a revoke), False while a late event still could (a device found not
    #: compliant after all).
    met_at_us: int | None = None
    resolution: Resolution | None = None
    final: bool = False
    #: The device or owner a landing that is not final relies on (see `lifecycle.Landing`).
    met_by: str | None = None
    #: When the clock must pass for it to fire: its deadline, deferred by covering exceptions,
    #: plus grace. The key of its entry in the identity's deadline heap.
    fire_after_us: int = NEVER_US


class IdentityState(msgspec.Struct, gc=False, omit_defaults=True):
    """Everything the engine knows about one identity. Only messages keyed by it change it."""

    identity_id: str
    identity_kind: IdentityKind = "human"
    status: IdentityStatus | None = None
    status_version: Version = msgspec.field(default_factory=Version)
    #: When the current status value began (a snapshot repeating it does not move this).
    status_since_us: int = NEVER_US
    status_since_event_id: str = ""
    #: Each change of status value (since_us, status, event_id), oldest first, back to the
    #: late-event horizon and at most `Limits.transitions` of them: what the status was when a
    #: late grant happened, and what an owner tells a non-human identity that links to it.
    transitions: list[tuple[int, IdentityStatus, str]] = msgspec.field(default_factory=list)
    role: str | None = None
    # -- a non-human identity's owner --------------------------------------------------------
    owner_id: str | None = None
    owner_since_us: int = NEVER_US
    #: The owner before the current one, when it owned the identity, and what it reported: a
    #: report from it that arrives late still counts for the time it owned the identity.
    previous_owner_id: str | None = None
    previous_owner_since_us: int = NEVER_US
    previous_owner_until_us: int = NEVER_US
    previous_owner_timeline: list[tuple[int, IdentityStatus | None, str]] = msgspec.field(
        default_factory=list
    )
    previous_owner_version: Version = msgspec.field(default_factory=Version)
    #: The current owner's status changes as it reported them (since_us, status, event_id),
    #: oldest first; status None: the owner is unknown to the engine. `owner_heard`: it has
    #: answered the link.
    owner_timeline: list[tuple[int, IdentityStatus | None, str]] = msgspec.field(
        default_factory=list
    )
    owner_version: Version = msgspec.field(default_factory=Version)
    owner_heard: bool = False
    # -- an owner's non-human identities -----------------------------------------------------
    owned: dict[str, OwnedLink] = msgspec.field(default_factory=dict)
    # -- facts -------------------------------------------------------------------------------
    grants: dict[str, Grant] = msgspec.field(default_factory=dict)
    devices: dict[str, DeviceView] = msgspec.field(default_factory=dict)
    #: Heap of (since_us, device_id) of devices that were trusted from since_us (stale entries
    #: are skipped: the device's view says whether it still is): the earliest trusted device.
    trusted_heap: list[tuple[int, str]] = msgspec.field(default_factory=list)
    #: Trust that has ended: (since_us, until_us, device_id) of a device bound and compliant in
    #: [since_us, until_us), oldest first. An activation can reach the identity after the device
    #: history that met it (HR hours late, or a backlog whose device side is read first): a
    #: laptop enrolled in the morning and lost in the evening still met that morning's joiner.
    trust_spans: list[tuple[int, int, str]] = msgspec.field(default_factory=list)
    waivers: dict[str, Waiver] = msgspec.field(default_factory=dict)
    # -- triggers and obligations ------------------------------------------------------------
    triggers: dict[str, TriggerState] = msgspec.field(default_factory=dict)
    #: Triggers in force by what they are about: the trigger name (`leaver`, `joiner`, …) or,
    #: for device_untrusted, the device key (`compose_key("device", device_id)`).
    in_force: dict[str, str] = msgspec.field(default_factory=dict)
    #: Ended triggers, oldest first: the order in which they are forgotten.
    ended: list[str] = msgspec.field(default_factory=list)
    #: Obligations still pending or open, by finding id: the only ones the clock can affect.
    obligations: dict[str, Obligation] = msgspec.field(default_factory=dict)
    #: Finding ids of live obligations on each entitlement (by grant key).
    by_grant: dict[str, IdSet] = msgspec.field(default_factory=dict)
    #: Finding ids of live grant_while_inactive obligations.
    inactive_grants: IdSet = msgspec.field(default_factory=dict)
    #: Heap of (fire_after_us, finding_id) for pending obligations (stale entries skipped).
    deadlines: list[tuple[int, str]] = msgspec.field(default_factory=list)
    #: Finding ids of obligations (live or settled) whose landing is not final, by the device
    #: or owner key it relies on (`Obligation.met_by`): what a late report about it may disprove.
    relying: dict[str, IdSet] = msgspec.field(default_factory=dict)
    #: Done obligations of remembered triggers, by finding id (evidence, and a guard against
    #: opening the same obligation twice).
    settled: dict[str, Obligation] = msgspec.field(default_factory=dict)


class DeviceState(msgspec.Struct, gc=False):
    """A device's posture and bound identities."""

    device_id: str
    posture: Posture
    identity_ids: list[str]
    version: Version


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
