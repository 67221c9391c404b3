"""mover: an active identity's `role` changes from one value to another; every privileged
entitlement granted before the change must be revoked, or granted again (re-approved) after
it, within `mover.window` (7 d by default). A termination before then hands the obligations to
offboarding (the leaver rule)."""

from __future__ import annotations

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.state import (
    Grant,
    IdentityState,
    Obligation,
    TriggerState,
    compose_key,
)
from accessdrift.models.vocabulary import Resolution
from accessdrift.streams.lifecycle import Context, Landing, earliest
from accessdrift.streams.rules.base import (
    Rule,
    StatusChanged,
    access,
    ended,
    exception_note,
    grant_landed,
    grant_obligation,
    who,
    window,
)


class Mover(Rule):
    trigger = "mover"
    word = "role change"

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        if change.status == "terminated":
            # Every role change still under review ends: offboarding takes over.
            for about, key, _ in ctx.all_in_force("mover"):
                ctx.end_trigger(key, change.at_us, about)
        elif (
            change.status == "active"
            and change.previous == "active"
            and change.previous_role
            and change.role
            and change.previous_role != change.role
        ):
            trigger = TriggerState("mover", change.event_id, change.at_us)
            ctx.open_trigger(trigger, compose_key("mover", change.event_id))

    def obliges(self, ctx: Context, trigger: TriggerState, grant: Grant) -> Obligation | None:
        before_change = grant.granted_at_us is not None and grant.granted_at_us < trigger.at_us
        if not (grant.privileged and before_change and grant.held_at(trigger.at_us)):
            return None
        deadline_us = trigger.at_us + ctx.policy.mover.window_s * US_PER_S
        return grant_obligation(ctx, self, trigger, grant, deadline_us)

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        changed = None
        if grant is not None and grant.version.at_us > ob.triggered_at_us:
            if grant.held:
                changed = Landing(grant.version.at_us, "regranted")
            else:
                assert grant.revoked_at_us is not None
                changed = Landing(grant.revoked_at_us, "revoked")
        return earliest(changed, ended(trigger, ob))

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        return (
            f"{who(s)} changed role at {format_us(ob.triggered_at_us)} but keeps {access(ob)} "
            f"from before the change past the {window(ob)} review deadline; revoke or "
            f"re-approve it.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        return (
            grant_landed(ob, s, resolution) or f"{who(s)} was terminated and offboarding took over"
        )
