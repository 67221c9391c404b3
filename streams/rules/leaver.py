"""leaver: an identity becomes `terminated`; every entitlement it holds must be revoked within
the window (privileged: `leaver.privileged_window`, 1 h by default; others: `leaver.window`,
24 h). An identity active again before then ends the obligations."""

from __future__ import annotations

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.state import Grant, IdentityState, Obligation, TriggerState, compose_key
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
    revoked,
    who,
    window,
)


class Leaver(Rule):
    trigger = "leaver"
    word = "termination"

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        if change.status == "active":
            for about, key, _ in ctx.all_in_force("leaver"):
                ctx.end_trigger(key, change.at_us, about)
        elif change.status == "terminated" and change.changed:
            trigger = TriggerState("leaver", change.event_id, change.at_us)
            ctx.open_trigger(trigger, compose_key("leaver", change.event_id))

    def obliges(self, ctx: Context, trigger: TriggerState, grant: Grant) -> Obligation | None:
        if not grant.held_at(trigger.at_us):
            return None
        policy = ctx.policy.leaver
        window_s = policy.privileged_window_s if grant.privileged else policy.window_s
        return grant_obligation(ctx, self, trigger, grant, trigger.at_us + window_s * US_PER_S)

    def oblige(self, ctx: Context, key: str, trigger: TriggerState, grant: Grant) -> bool:
        if not super().oblige(ctx, key, trigger, grant):
            return False
        # A grant from before the termination that arrives late: a fresh offboarding record
        # follows once it is revoked too.
        trigger.evidence_sent = False
        return True

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        return earliest(revoked(grant), ended(trigger, ob))

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        return (
            f"{who(s)} was terminated at {format_us(ob.triggered_at_us)} but still holds "
            f"{access(ob)} past the {window(ob)} deadline; revoke it.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        return grant_landed(ob, s, resolution) or f"{who(s)} is active again"
