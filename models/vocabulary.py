"""The closed sets of words the contract and the findings use."""

from __future__ import annotations

from typing import Final, Literal

IdentityStatus = Literal["active", "suspended", "terminated"]
IdentityKind = Literal["human", "service_account", "api_key", "workload", "ai_agent"]
Posture = Literal["enrolled", "compliant", "noncompliant", "lost", "unenrolled"]
UntrustedPosture = Literal["noncompliant", "lost", "unenrolled"]
Action = Literal["granted", "revoked"]
EntitlementKind = Literal[
    "role", "group", "permission", "license", "session", "token", "credential"
]
Trigger = Literal[
    "leaver",
    "suspension",
    "mover",
    "device_untrusted",
    "owner_departed",
    "joiner",
    "grant_while_inactive",
]
FindingKind = Literal[
    "access_not_revoked", "orphaned_nhi", "no_trusted_device", "grant_to_inactive_identity"
]
FindingStatus = Literal["open", "resolved"]
Severity = Literal["critical", "high", "medium", "low"]
#: Where an obligation is in its life. `pending`: not judged yet (the clock has not passed its
#: deadline + grace, or what it asks for landed on time but a late event could still disprove
#: it). `open`: a finding was published and is not resolved. `done`: judged and finished.
ObligationState = Literal["pending", "open", "done"]
#: How what an obligation asked for landed, or why it went away.
Resolution = Literal[
    # the entitlement was revoked / re-approved after a role change
    "revoked",
    "regranted",
    # the identity has a compliant device
    "trusted_device",
    # a non-human identity got an active owner / was itself terminated
    "reowned",
    "retired",
    # the trigger's reason went away (active again, device compliant again, owner back)
    "ended",
    # never owed: a late event showed the grant was not held at the trigger's time, or the
    # identity was active when a grant landed
    "withdrawn",
    "reactivated",
]
#: How an obligation ended, as the engine reports it for time-to-revoke and control metrics.
#: `exception_expired`: an approved exception deferred it and expired with it still unmet (a
#: finding opens).
Outcome = Literal["on_time", "late", "withdrawn", "exception_expired"]

UNTRUSTED_POSTURES: Final = frozenset({"noncompliant", "lost", "unenrolled"})
#: Kinds of entitlement that let a holder act right now; a suspension must cut these.
LIVE_ACCESS_KINDS: Final = frozenset({"session", "token", "credential"})
#: Kinds that can be bound to one device.
DEVICE_BOUND_KINDS: Final = frozenset({"session", "token"})

FINDING_KIND_OF: Final[dict[Trigger, FindingKind]] = {
    "leaver": "access_not_revoked",
    "suspension": "access_not_revoked",
    "mover": "access_not_revoked",
    "device_untrusted": "access_not_revoked",
    "owner_departed": "orphaned_nhi",
    "joiner": "no_trusted_device",
    "grant_while_inactive": "grant_to_inactive_identity",
}
