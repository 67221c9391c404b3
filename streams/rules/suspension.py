"""suspension: an identity becomes `suspended`; every live credential it holds (`session`,
`token`, `credential`) must be revoked within `suspension.window` (1 h by default). An identity
active again before then ends the obligations."""

from __future__ import annotations

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.state import Grant, IdentityState, Obligation, TriggerState, compose_key
from accessdrift.models.vocabulary import LIVE_ACCESS_KINDS, Resolution
from accessdrift.streams.lifecycle import Context, Landing, earliest
from accessdrift.streams.rules.base import (
    Rule,
    StatusChanged,
    access,
    ended,
    exception_note,
    grant_landed,
    grant_obligation,
    revoked,
    who,
    window,
)


class Suspension(Rule):
    trigger = "suspension"
    word = "suspension"

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        if change.status == "active":
            for about, key, _ in ctx.all_in_force("suspension"):
                ctx.end_trigger(key, change.at_us, about)
        elif change.status == "suspended" and change.changed:
            trigger = TriggerState("suspension", change.event_id, change.at_us)
            ctx.open_trigger(trigger, compose_key("suspension", change.event_id))

    def obliges(self, ctx: Context, trigger: TriggerState, grant: Grant) -> Obligation | None:
        if grant.kind not in LIVE_ACCESS_KINDS or not grant.held_at(trigger.at_us):
            return None
        deadline_us = trigger.at_us + ctx.policy.suspension.window_s * US_PER_S
        return grant_obligation(ctx, self, trigger, grant, deadline_us)

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        return earliest(revoked(grant), ended(trigger, ob))

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        return (
            f"{who(s)} was suspended at {format_us(ob.triggered_at_us)} but still holds "
            f"{access(ob)} past the {window(ob)} deadline; revoke it.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        return grant_landed(ob, s, resolution) or f"{who(s)} is active again"
