"""owner_departed: the owner of an `active` non-human identity becomes `terminated`; within
`owner_departed.window` (7 d by default) the non-human identity must be terminated itself, or
have an active owner (the same owner back, or a new one).

The owner's status reaches the non-human identity as `OwnerSignal` messages (the identities may
sit on different partitions), each saying since when the owner had that status. A reassignment
to an owner whose earlier termination arrives only later did not re-own the identity: the
obligation it seemed to meet is unmet again, and no new one opens for the second owner."""

from __future__ import annotations

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.state import (
    Grant,
    IdentityState,
    Obligation,
    TriggerState,
    compose_key,
)
from accessdrift.models.text import printable
from accessdrift.models.vocabulary import IdentityStatus, Resolution
from accessdrift.streams.lifecycle import Context, Landing, earliest
from accessdrift.streams.rules.base import (
    Rule,
    StatusChanged,
    exception_note,
    identity_obligation,
    who,
    window,
)

ABOUT = "owner_departed"


def owner_key(owner_id: str) -> str:
    """The key by which a landing names the owner it relies on."""
    return compose_key("owner", owner_id)


def owner_status_at(s: IdentityState, moment_us: int) -> IdentityStatus | None:
    """The current owner's status at `moment_us`, as far as it has reported."""
    status: IdentityStatus | None = None
    for since_us, value, _ in s.owner_timeline:
        if since_us > moment_us:
            break
        status = value
    return status


def owner_active_from(s: IdentityState, moment_us: int) -> int | None:
    """The first time at or after `moment_us` when the current owner is active, if known."""
    if owner_status_at(s, moment_us) == "active":
        return moment_us
    for since_us, value, _ in s.owner_timeline:
        if since_us > moment_us and value == "active":
            return since_us
    return None


def _the_obligation(s: IdentityState, trigger: TriggerState) -> Obligation:
    """An owner_departed trigger's one obligation, live or settled."""
    for finding_id in trigger.live:
        return s.obligations[finding_id]
    return s.settled[next(iter(trigger.settled))]


class OwnerDeparted(Rule):
    trigger = "owner_departed"
    word = "owner's termination"
    per_grant = False

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        self.check(ctx)

    def on_owner(self, ctx: Context) -> None:
        s = ctx.s
        if s.owner_id is not None:
            # What the current owner's activity seemed to meet, its late report may disprove.
            for ob in ctx.relying_on(owner_key(s.owner_id)):
                if ob.opened or ob.met_at_us is None:
                    continue
                if owner_status_at(s, ob.met_at_us) != "active":
                    ctx.unmeet(ob)
                    assert ob.trigger_key is not None
                    ctx.restore_trigger(ob.trigger_key, ABOUT)
        self.check(ctx)

    def check(self, ctx: Context) -> None:
        """Meet the obligation in force if the identity is retired or owned by an active owner
        now; otherwise open one if its owner has left."""
        s = ctx.s
        if s.identity_kind == "human":
            return
        found = ctx.in_force(ABOUT)
        if found is not None:
            key, trigger = found
            ob = _the_obligation(s, trigger)
            if ob.state != "done":
                self.reassess(ctx, ob, trigger)
            if ob.met_at_us is not None:
                ctx.end_trigger(key, ob.met_at_us, ABOUT)
            return
        if s.status != "active" or s.owner_id is None or not s.owner_timeline:
            return
        since_us, status, event_id = s.owner_timeline[-1]
        if status == "terminated":
            at_us = max(since_us, s.owner_since_us, s.status_since_us)
            self.open(ctx, event_id, at_us, s.owner_id)

    def open(self, ctx: Context, event_id: str, at_us: int, owner_id: str) -> bool:
        deadline_us = at_us + ctx.policy.owner_departed.window_s * US_PER_S
        trigger = TriggerState(
            "owner_departed", event_id, at_us, owner_id=owner_id, deadline_us=deadline_us
        )
        if ctx.open_trigger(trigger, ABOUT) is None:
            return False
        self.check(ctx)
        return True

    def former_owner_left(self, ctx: Context, owner_id: str, event_id: str, at_us: int) -> bool:
        """The previous owner's termination, arriving after the identity changed owner: the
        identity was orphaned from then until the change (late data between identities)."""
        s = ctx.s
        if (
            s.identity_kind == "human"
            or owner_id != s.previous_owner_id
            or at_us >= s.previous_owner_until_us
            or ctx.in_force(ABOUT) is not None
        ):
            return False
        at_us = max(at_us, s.previous_owner_since_us)
        if ctx.status_at(at_us + 1) != "active":
            return False
        return self.open(ctx, event_id, at_us, owner_id)

    def oblige_identity(self, ctx: Context, key: str, trigger: TriggerState) -> None:
        assert trigger.deadline_us is not None
        ob = identity_obligation(ctx, self, key, trigger, trigger.deadline_us, trigger.owner_id)
        if ctx.add(ob, trigger):
            self.reassess(ctx, ob, trigger)

    def landing(
        self, ctx: Context, ob: Obligation, trigger: TriggerState | None, grant: Grant | None
    ) -> Landing | None:
        s = ctx.s
        retired = None
        if s.status == "terminated":
            retired = Landing(max(s.status_since_us, ob.triggered_at_us), "retired")
        owned = None
        if s.owner_id is not None and s.owner_heard:
            active_us = owner_active_from(s, max(ob.triggered_at_us, s.owner_since_us))
            if active_us is not None:
                same = trigger is not None and trigger.owner_id == s.owner_id
                owned = Landing(
                    active_us, "ended" if same else "reowned", final=False, by=owner_key(s.owner_id)
                )
        return earliest(retired, owned)

    def can_judge(self, ctx: Context, ob: Obligation) -> bool:
        # A new owner's answer is on its way: its status may meet the obligation.
        return ctx.s.owner_id is None or ctx.s.owner_heard

    def open_summary(self, ob: Obligation, s: IdentityState) -> str:
        kind = s.identity_kind.replace("_", " ")
        return (
            f"The owner {printable(ob.context or '')} of {kind} {who(s)} was terminated at "
            f"{format_us(ob.triggered_at_us)} and no active owner took over within "
            f"{window(ob)}; assign an owner or retire it.{exception_note(ob)}"
        )

    def landed(self, ob: Obligation, s: IdentityState, resolution: Resolution) -> str:
        if resolution == "reowned":
            return f"{who(s)} has an active owner"
        if resolution == "retired":
            return f"{who(s)} was terminated"
        return f"the owner {printable(ob.context or '')} of {who(s)} is active again"
