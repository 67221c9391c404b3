"""device_untrusted: a device becomes `lost`, `noncompliant` or `unenrolled`. For each identity
bound to it, within the posture's window (`device_untrusted.lost_window` 15 min,
`unenrolled_window` 1 h, `noncompliant_window` 4 h by default):

* each `session` or `token` bound to that device must be revoked;
* each `requires_trusted_device` entitlement must be revoked, unless the identity has another
  compliant device;
* a session opened on the device while it stays untrusted is obliged from its grant.

The device compliant again ends the obligations; a device getting worse (noncompliant, then
lost) tightens what is pending to the stricter window."""

from __future__ import annotations

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.messages import DeviceSignal
from accessdrift.models.state import DeviceView, Grant, IdentityState, Obligation, TriggerState
from accessdrift.models.text import printable
from accessdrift.models.vocabulary import (
    DEVICE_BOUND_KINDS,
    UNTRUSTED_POSTURES,
    Posture,
    Resolution,
)
from accessdrift.streams.lifecycle import Context, Landing, device_key, earliest
from accessdrift.streams.rules.base import (
    Rule,
    access,
    ended,
    exception_note,
    grant_landed,
    grant_obligation,
    revoked,
    who,
    window,
)


def _bound_here(trigger_device: str | None, grant: Grant) -> bool:
    return grant.kind in DEVICE_BOUND_KINDS and grant.device_id == trigger_device


class DeviceUntrusted(Rule):
    trigger = "device_untrusted"
    word = "device change"

    def on_device(self, ctx: Context, signal: DeviceSignal, view: DeviceView) -> None:
        about = device_key(signal.device_id)
        found = ctx.in_force(about)
        if view.posture == "compliant":
            if found is not None:
                ctx.end_trigger(found[0], signal.occurred_at_us, about)
            if view.trusted:
                self._trusted_elsewhere(ctx, signal.device_id)
        elif view.bound and view.posture in UNTRUSTED_POSTURES:
            deadline_us = signal.occurred_at_us + self._window_us(ctx, view.posture)
            if found is None:
                trigger = TriggerState(
                    "device_untrusted",
                    signal.event_id,
                    signal.occurred_at_us,
                    device_id=signal.device_id,
                    posture=view.posture,
                    deadline_us=deadline_us,
                )
                ctx.open_trigger(trigger, about)
            else:
                self._escalate(ctx, found[1], view.posture, deadline_us)

    def _window_us(self, ctx: Context, posture: Posture) -> int:
        return ctx.policy.device_untrusted.window_s(posture) * US_PER_S

    def _trusted_elsewhere(self, ctx: Context, device_id: str) -> None:
        """A bound device became compliant: what other untrusted devices asked of entitlements
        that need a trusted device may be met by this one."""
        for trigger, ob in ctx.live_of("device_untrusted"):
            if trigger.device_id != device_id and ob.state != "done":
                self.reassess(ctx, ob, trigger)

    def _escalate(
        self, ctx: Context, trigger: TriggerState, posture: Posture, deadline_us: int
    ) -> None:
        """The device got worse: tighten the deadline of what is still pending."""
        assert trigger.deadline_us is not None
        trigger.posture = posture
        if deadline_us >= trigger.deadline_us:
            return
        trigger.deadline_us = deadline_us
        for finding_id in trigger.live:
            ob = ctx.s.obligations[finding_id]
            if ob.state == "pending" and ob.triggered_at_us == trigger.at_us:
                ob.deadline_us = min(ob.deadline_us, deadline_us)
                ob.context = posture
                ctx.schedule(ob)

    def obliges(self, ctx: Context, trigger: TriggerState, grant: Grant) -> Obligation | None:
        assert trigger.deadline_us is not None
        assert trigger.posture is not None
        granted_after = (
            grant.held
            and grant.granted_at_us is not None
            and grant.granted_at_us > trigger.at_us
            and (trigger.ended_at_us is None or grant.granted_at_us < trigger.ended_at_us)
        )
        if not (grant.held_at(trigger.at_us) or granted_after):
            return None
        if not _bound_here(trigger.device_id, grant) and not (
            grant.requires_trusted_device and ctx.trusted_since(exclude=trigger.device_id) is None
        ):
            return None
        if not granted_after:
            return grant_obligation(ctx, self, trigger, grant, trigger.deadline_us)
        assert grant.granted_at_us is not None
        return grant_obligation(
            ctx,
            self,
            trigger,
            grant,
            grant.granted_at_us + self._window_us(ctx, trigger.posture),
            triggered_at_us=grant.granted_at_us,
            distinct=grant.grant_event_id,
        )

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        elsewhere = None
        assert grant is not None
        if grant.requires_trusted_device and not _bound_here(ob.device_id, grant):
            trusted = ctx.trusted_since(exclude=ob.device_id)
            if trusted is not None:
                at_us = max(trusted[0], ob.triggered_at_us)
                elsewhere = Landing(at_us, "trusted_device", final=False, by=device_key(trusted[1]))
        return earliest(revoked(grant), elsewhere, ended(trigger, ob))

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        return (
            f"Device {printable(ob.device_id or '')} of {who(s)} became {ob.context} at "
            f"{format_us(ob.triggered_at_us)} but {access(ob)} is still live past the "
            f"{window(ob)} deadline; revoke it.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        if resolution == "trusted_device":
            return f"{who(s)} has a compliant device"
        compliant = f"device {printable(ob.device_id or '')} is compliant again"
        return grant_landed(ob, s, resolution) or compliant
