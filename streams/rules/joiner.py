"""joiner: a human becomes `active` (first seen, or back from suspended or terminated); within
`joiner.window` (24 h by default) a compliant device must be bound to it. Suspended or
terminated again before then ends the obligation.

A device that met it can turn out, from a posture event that arrives late, not to have been
compliant or bound then: the obligation is unmet again (see the engine's device handling)."""

from __future__ import annotations

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.messages import DeviceSignal
from accessdrift.models.state import DeviceView, Grant, IdentityState, Obligation, TriggerState
from accessdrift.models.vocabulary import Resolution
from accessdrift.streams.lifecycle import Context, Landing, device_key, earliest
from accessdrift.streams.rules.base import (
    Rule,
    StatusChanged,
    ended,
    exception_note,
    identity_obligation,
    who,
    window,
)


class Joiner(Rule):
    trigger = "joiner"
    word = "activation"
    per_grant = False

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        found = ctx.in_force("joiner")
        if change.status != "active":
            if found is not None:
                ctx.end_trigger(found[0], change.at_us, "joiner")
        elif change.changed and ctx.s.identity_kind == "human" and found is None:
            ctx.open_trigger(TriggerState("joiner", change.event_id, change.at_us), "joiner")

    def on_device(self, ctx: Context, signal: DeviceSignal, view: DeviceView) -> None:
        if view.trusted:
            for trigger, ob in ctx.live_of("joiner"):
                if ob.state != "done":
                    self.reassess(ctx, ob, trigger)

    def oblige_identity(self, ctx: Context, key: str, trigger: TriggerState) -> None:
        deadline_us = trigger.at_us + ctx.policy.joiner.window_s * US_PER_S
        ob = identity_obligation(ctx, self, key, trigger, deadline_us, context=None)
        if ctx.add(ob, trigger):
            self.reassess(ctx, ob, trigger)

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        device = None
        trusted = ctx.trusted_after(ob.triggered_at_us)
        if trusted is not None:
            at_us, device_id = trusted
            device = Landing(at_us, "trusted_device", final=False, by=device_key(device_id))
        return earliest(device, ended(trigger, ob))

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        return (
            f"{who(s)} became active at {format_us(ob.triggered_at_us)} and has no compliant "
            f"device after {window(ob)}; enrol a device.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        if resolution == "trusted_device":
            return f"{who(s)} has a compliant device"
        return f"{who(s)} is no longer active"
