"""What every trigger's rule provides, and the pieces the rules share.

A rule says, for one trigger: what opens it (`on_status`, `on_grant`, `on_device`, `on_owner`,
called by the engine after it has updated the facts), which obligations it places
(`oblige` per entitlement, or `oblige_identity` for one on the identity itself), their deadline
and severity, what meets them (`landing`), and the sentences a person reads. The obligation's
life after that (settle, fire, resolve, withdraw, exceptions) is the same for every rule and
lives in `streams/lifecycle.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from accessdrift.models.clock import US_PER_S, format_duration_s, format_us
from accessdrift.models.findings import stable_id
from accessdrift.models.messages import DeviceSignal, OwnerSignal
from accessdrift.models.state import (
    DeviceView,
    Grant,
    IdentityState,
    Obligation,
    TriggerState,
    grant_key,
)
from accessdrift.models.text import printable
from accessdrift.models.vocabulary import IdentityStatus, Resolution, Severity, Trigger
from accessdrift.streams.lifecycle import Context, Landing

INACTIVE = frozenset({"suspended", "terminated"})


@dataclass(frozen=True)
class StatusChanged:
    """An identity status event the engine applied: the new snapshot and what it replaced."""

    event_id: str
    at_us: int
    status: IdentityStatus
    previous: IdentityStatus | None
    role: str | None
    previous_role: str | None

    @property
    def changed(self) -> bool:
        """Whether the status value changed (a snapshot repeating it did not)."""
        return self.status != self.previous


class Rule:
    """One trigger's rule. Subclasses override the hooks they need."""

    trigger: ClassVar[Trigger]
    #: What the trigger is called in a resolved summary ("after the termination").
    word: ClassVar[str]
    #: One obligation per entitlement (True) or one on the identity itself.
    per_grant: ClassVar[bool] = True

    # -- what opens it -----------------------------------------------------------------------

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        """The identity's own status snapshot was applied."""

    def on_grant(self, ctx: Context, grant: Grant, new_interval: bool) -> None:
        """An entitlement change was applied (`new_interval`: it started a held interval)."""

    def on_device(self, ctx: Context, signal: DeviceSignal, view: DeviceView) -> None:
        """What the identity knows of a device changed (`view` is the new view)."""

    def on_owner(self, ctx: Context, signal: OwnerSignal) -> None:
        """A non-human identity heard from its current or previous owner."""

    # -- what it obliges ---------------------------------------------------------------------

    def obliges(self, ctx: Context, trigger: TriggerState, grant: Grant) -> Obligation | None:
        """The obligation `trigger` places on `grant`, or None (per-entitlement rules)."""
        return None

    def oblige(self, ctx: Context, key: str, trigger: TriggerState, grant: Grant) -> bool:
        """Open the obligation `trigger` places on `grant`, if any and not already there;
        whether one was opened."""
        ob = self.obliges(ctx, trigger, grant)
        if ob is None:
            return False
        ob.trigger_key = key
        if not ctx.add(ob, trigger):
            return False
        self.reassess(ctx, ob, trigger)
        return True

    def oblige_identity(self, ctx: Context, key: str, trigger: TriggerState) -> None:
        """Open the one identity-wide obligation of `trigger` (identity-wide rules)."""
        raise NotImplementedError(f"{self.trigger} places obligations per entitlement")

    def severity(self, ctx: Context, privileged: bool) -> Severity:
        section = getattr(ctx.policy, self.trigger)
        severity: Severity = section.severity
        if privileged:
            severity = getattr(section, "privileged_severity", severity)
        return severity

    # -- what meets it -----------------------------------------------------------------------

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        """The earliest known change that meets `ob`, from what the engine knows now."""
        raise NotImplementedError

    def reassess(self, ctx: Context, ob: Obligation, trigger: TriggerState | None) -> None:
        """Look again at what meets `ob` after a fact changed: withdraw it if its premise turned
        out false, else meet it with the earliest landing known."""
        grant = None
        if self.per_grant:
            assert ob.system is not None
            assert ob.entitlement is not None
            grant = ctx.s.grants[grant_key(ob.system, ob.entitlement)]
            # A later interval of the grant (a re-grant after a revoke) says nothing about the
            # one the trigger saw.
            same_interval = grant.grant_event_id == ob.interval_event_id
            if same_interval and not grant.held_at(ob.triggered_at_us):
                ctx.withdraw(ob, "withdrawn")
                return
        landing = self.landing(ctx, ob, trigger, grant)
        if landing is not None:
            ctx.meet(ob, landing)

    def can_judge(self, ctx: Context, ob: Obligation) -> bool:
        """Whether the engine knows enough to judge `ob` when its time comes."""
        return True

    # -- what a person reads -----------------------------------------------------------------

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        """The sentence of an open finding."""
        raise NotImplementedError

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        """What happened that resolved the finding, as the start of a sentence."""
        raise NotImplementedError

    def resolved_summary(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        assert ob.met_at_us is not None
        after = format_duration_s(max(0, ob.met_at_us - ob.triggered_at_us) / US_PER_S)
        return (
            f"Resolved: {self.landed(ob, s, resolution)} as of {format_us(ob.met_at_us)}, "
            f"{after} after the {self.word} (window {window(ob)})."
        )


# -- pieces the rules share ----------------------------------------------------------------------


def grant_obligation(
    ctx: Context,
    rule: Rule,
    trigger: TriggerState,
    grant: Grant,
    deadline_us: int,
    *,
    triggered_at_us: int | None = None,
    distinct: str | None = None,
) -> Obligation:
    """The obligation `trigger` places on `grant`, due at `deadline_us`. `distinct` separates
    several obligations of one trigger on one entitlement (a session granted on a device
    already lost)."""
    return Obligation(
        finding_id=stable_id(
            ctx.s.identity_id,
            trigger.trigger,
            trigger.event_id,
            grant.system,
            grant.entitlement,
            trigger.device_id,
            distinct,
        ),
        trigger_key=None,
        trigger=trigger.trigger,
        trigger_event_id=trigger.event_id,
        system=grant.system,
        entitlement=grant.entitlement,
        entitlement_kind=grant.kind,
        device_id=trigger.device_id,
        privileged=grant.privileged,
        triggered_at_us=trigger.at_us if triggered_at_us is None else triggered_at_us,
        deadline_us=deadline_us,
        severity=rule.severity(ctx, grant.privileged),
        context=trigger.posture,
        interval_event_id=grant.grant_event_id,
    )


def identity_obligation(
    ctx: Context, rule: Rule, key: str, trigger: TriggerState, deadline_us: int, context: str | None
) -> Obligation:
    """The one obligation an identity-wide trigger places on the identity itself."""
    return Obligation(
        finding_id=stable_id(
            ctx.s.identity_id, trigger.trigger, trigger.event_id, str(trigger.at_us)
        ),
        trigger_key=key,
        trigger=trigger.trigger,
        trigger_event_id=trigger.event_id,
        system=None,
        entitlement=None,
        entitlement_kind=None,
        device_id=None,
        privileged=False,
        triggered_at_us=trigger.at_us,
        deadline_us=deadline_us,
        severity=rule.severity(ctx, privileged=False),
        context=context,
    )


def revoked(grant: Grant | None) -> Landing | None:
    """The grant's revocation, if it is revoked."""
    if grant is None or grant.held or grant.revoked_at_us is None:
        return None
    return Landing(grant.revoked_at_us, "revoked")


def ended(trigger: TriggerState | None, ob: Obligation) -> Landing | None:
    """The trigger's reason went away (never before the obligation began)."""
    if trigger is None or trigger.ended_at_us is None:
        return None
    return Landing(max(trigger.ended_at_us, ob.triggered_at_us), "ended")


def window(ob: Obligation) -> str:
    return format_duration_s((ob.deadline_us - ob.triggered_at_us) / US_PER_S)


def who(s: IdentityState) -> str:
    """The identity, as a person may safely read it."""
    return printable(s.identity_id)


def access(ob: Obligation) -> str:
    """The entitlement, as a person may safely read it: `privileged role admin in github`."""
    privileged = "privileged " if ob.privileged else ""
    return (
        f"{privileged}{ob.entitlement_kind} {printable(ob.entitlement or '')} in "
        f"{printable(ob.system or '')}"
    )


def grant_landed(ob: Obligation, s: IdentityState, resolution: Resolution) -> str | None:
    """What landed on an entitlement, for the rules that oblige entitlements; None for a
    resolution only the rule itself can put in words (its trigger's reason going away)."""
    match resolution:
        case "revoked":
            return f"{access(ob)} of {who(s)} was revoked"
        case "regranted":
            return f"{access(ob)} of {who(s)} was re-approved"
        case "withdrawn":
            return f"{access(ob)} of {who(s)} turned out to be revoked before the trigger"
    return None


def exception_note(ob: Obligation) -> str:
    if ob.exception_id is None:
        return ""
    return f" Exception {printable(ob.exception_id)} covered it until it expired."
