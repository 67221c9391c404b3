"""grant_while_inactive: an entitlement is granted to a `suspended` or `terminated` identity.
Nothing can make that right in time: a finding opens at once (plus grace), and resolves when the
grant is revoked. A reactivation that arrives late and predates the grant withdraws it."""

from __future__ import annotations

from accessdrift.models.clock import format_us
from accessdrift.models.findings import stable_id
from accessdrift.models.state import Grant, IdentityState, Obligation, TriggerState, grant_key
from accessdrift.models.vocabulary import Resolution
from accessdrift.streams.lifecycle import Context, Landing
from accessdrift.streams.rules.base import (
    INACTIVE,
    Rule,
    StatusChanged,
    access,
    exception_note,
    grant_landed,
    revoked,
    who,
)


class GrantWhileInactive(Rule):
    trigger = "grant_while_inactive"
    word = "grant"

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        s = ctx.s
        if change.status == "active":
            # A reactivation arriving after grants it predates: those were not to an inactive
            # identity after all.
            for finding_id in list(s.inactive_grants):
                ob = s.obligations[finding_id]
                if (
                    ob.triggered_at_us > change.at_us
                    and ctx.status_at(ob.triggered_at_us) == "active"
                ):
                    assert ob.system is not None
                    assert ob.entitlement is not None
                    s.grants[grant_key(ob.system, ob.entitlement)].flagged_inactive = False
                    ctx.withdraw(ob, "reactivated")
        elif change.changed:
            # A termination or suspension arriving after grants it predates.
            for grant in list(s.grants.values()):
                after = grant.granted_at_us is not None and grant.granted_at_us > change.at_us
                if after and not grant.flagged_inactive:
                    self._flag(ctx, grant)

    def on_grant(self, ctx: Context, grant: Grant, new_interval: bool) -> None:
        if new_interval and not grant.flagged_inactive:
            assert grant.granted_at_us is not None
            if ctx.status_at(grant.granted_at_us) in INACTIVE:
                self._flag(ctx, grant)

    def _flag(self, ctx: Context, grant: Grant) -> None:
        assert grant.granted_at_us is not None
        assert grant.grant_event_id is not None
        grant.flagged_inactive = True
        ob = Obligation(
            finding_id=stable_id(
                ctx.s.identity_id,
                "grant_while_inactive",
                grant.grant_event_id,
                grant.system,
                grant.entitlement,
            ),
            trigger_key=None,
            trigger="grant_while_inactive",
            trigger_event_id=grant.grant_event_id,
            system=grant.system,
            entitlement=grant.entitlement,
            entitlement_kind=grant.kind,
            device_id=grant.device_id,
            privileged=grant.privileged,
            triggered_at_us=grant.granted_at_us,
            deadline_us=grant.granted_at_us,
            severity=self.severity(ctx, grant.privileged),
            context=ctx.status_at(grant.granted_at_us),
            interval_event_id=grant.grant_event_id,
        )
        if ctx.add(ob, None):
            self.reassess(ctx, ob, None)

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        return revoked(grant)

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        return (
            f"{access(ob)} was granted to {who(s)} at {format_us(ob.triggered_at_us)} while it "
            f"was {ob.context}; revoke it.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        if resolution == "reactivated":
            return f"{who(s)} turned out to be active again when {access(ob)} was granted"
        return grant_landed(ob, s, resolution) or f"{access(ob)} of {who(s)} was revoked"
