"""owner_departed: the owner of an `active` non-human identity becomes `terminated`; within
`owner_departed.window` (7 d by default) the non-human identity must be terminated itself, or
have an active owner (the same owner back, or a new one).

The owner's status reaches the non-human identity as `OwnerSignal` messages (the identities may
sit on different partitions), each saying since when the owner had that status. A reassignment
to an owner whose earlier termination arrives only later did not re-own the identity: the
obligation it seemed to meet is unmet again, and no new one opens for the second owner."""

from __future__ import annotations

from accessdrift.models.clock import LATEST_US, US_PER_S, format_us
from accessdrift.models.messages import OwnerSignal
from accessdrift.models.state import (
    NEVER_US,
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


Timeline = list[tuple[int, IdentityStatus | None, str]]


def _entry_at(timeline: Timeline, moment_us: int) -> tuple[int, IdentityStatus | None, str] | None:
    """The owner's report in force at `moment_us`."""
    found = None
    for entry in timeline:
        if entry[0] > moment_us:
            break
        found = entry
    return found


def status_at(timeline: Timeline, moment_us: int) -> IdentityStatus | None:
    """An owner's status at `moment_us`, as far as it has reported."""
    entry = _entry_at(timeline, moment_us)
    return None if entry is None else entry[1]


def active_from(timeline: Timeline, moment_us: int) -> int | None:
    """The first time at or after `moment_us` when the owner is active, as far as reported."""
    if status_at(timeline, moment_us) == "active":
        return moment_us
    for since_us, value, _ in timeline:
        if since_us > moment_us and value == "active":
            return since_us
    return None


def _owned_by_active(
    ob: Obligation, trigger: TriggerState | None, owner_id: str, timeline: Timeline, since_us: int
) -> Landing | None:
    """When, from the obligation's start, `owner_id` (owner from `since_us`) was active."""
    active_us = active_from(timeline, max(ob.triggered_at_us, since_us))
    if active_us is None:
        return None
    same = trigger is not None and trigger.owner_id == owner_id
    return Landing(active_us, "ended" if same else "reowned", final=False, by=owner_key(owner_id))


def _the_obligation(s: IdentityState, trigger: TriggerState) -> Obligation | None:
    """An owner_departed trigger's one obligation, live or settled (None once withdrawn)."""
    for finding_id in trigger.live:
        return s.obligations[finding_id]
    for finding_id in trigger.settled:
        return s.settled[finding_id]
    return None


class OwnerDeparted(Rule):
    trigger = "owner_departed"
    word = "owner's termination"
    per_grant = False

    def on_status(self, ctx: Context, change: StatusChanged) -> None:
        self.check(ctx)

    def on_owner(self, ctx: Context, signal: OwnerSignal) -> None:
        self.check(ctx)

    def check(self, ctx: Context) -> None:
        """Judge again every remembered owner_departed obligation from what the identity knows
        now (its own status changes and both owners' reports, which may arrive in any order),
        then open one from the first time it was active with a terminated owner, if no trigger
        is in force."""
        s = ctx.s
        if s.identity_kind == "human":
            return
        self._rederive(ctx)
        # Each pass opens a trigger at a time no trigger covers yet, so this ends; the bound is
        # a guard against a mistake, not a limit that matters.
        for _ in range(2 * ctx.limits.owner_timeline + ctx.limits.transitions + 2):
            orphaned = self._first_orphaned(ctx)
            if orphaned is None:
                return
            at_us, owner_id, event_id = orphaned
            deadline_us = at_us + ctx.policy.owner_departed.window_s * US_PER_S
            trigger = TriggerState(
                "owner_departed", event_id, at_us, owner_id=owner_id, deadline_us=deadline_us
            )
            if ctx.open_trigger(trigger, ABOUT) is None:
                return
            self._rederive(ctx)

    def _rederive(self, ctx: Context) -> None:
        """What met each obligation may have changed with a late report. An obligation covers the
        orphaned time from its trigger until it was met (for ever while unmet), so a later
        trigger inside that time, not yet reported, is withdrawn."""
        s = ctx.s
        ordered = sorted(
            (trigger.at_us, key)
            for key, trigger in s.triggers.items()
            if trigger.trigger == "owner_departed"
        )
        covered_until_us = NEVER_US
        for at_us, key in ordered:
            trigger = s.triggers[key]
            ob = _the_obligation(s, trigger)
            if ob is None:
                continue
            covered = at_us < covered_until_us
            if ob.state != "done" and (covered or not self._premise_holds(ctx, trigger)):
                # Covered by an earlier trigger still unmet, or a late event showed the identity
                # was not active with a terminated owner then after all.
                opened = ob.opened
                ctx.withdraw(ob, "withdrawn")
                if opened:
                    self._sync(ctx, key, trigger, None)
                else:
                    ctx.drop_trigger(key)
                continue
            if ob.state == "open":
                self.reassess(ctx, ob, trigger)
            elif ob.state == "pending" or not (ob.opened or ob.final):
                landing = self.landing(ctx, ob, trigger, None)
                known = None if ob.met_at_us is None else (ob.met_at_us, ob.resolution)
                now = None if landing is None else (landing.at_us, landing.resolution)
                if now != known:
                    if ob.met_at_us is not None:
                        ctx.unmeet(ob)
                    if landing is not None:
                        ctx.meet(ob, landing)
            self._sync(ctx, key, trigger, ob)
            met_us = LATEST_US if ob.met_at_us is None else ob.met_at_us
            covered_until_us = max(covered_until_us, met_us)

    @staticmethod
    def _premise_holds(ctx: Context, trigger: TriggerState) -> bool:
        """Whether, as far as is known now, the identity was active and its owner terminated at
        the trigger's time (an owner not remembered any more is taken at its word)."""
        s, at_us = ctx.s, trigger.at_us
        if ctx.status_at(at_us + 1) != "active":
            return False
        owner_id: str | None
        if s.owner_id is not None and at_us >= s.owner_since_us:
            owner_id, timeline = s.owner_id, s.owner_timeline
        elif s.previous_owner_since_us <= at_us < s.previous_owner_until_us:
            owner_id, timeline = s.previous_owner_id, s.previous_owner_timeline
        else:
            return at_us < s.previous_owner_since_us
        return trigger.owner_id == owner_id and status_at(timeline, at_us) == "terminated"

    @staticmethod
    def _sync(ctx: Context, key: str, trigger: TriggerState, ob: Obligation | None) -> None:
        """An owner_departed trigger is in force exactly while its obligation is unmet."""
        if ob is None:
            if trigger.ended_at_us is None:
                ctx.end_trigger(key, trigger.at_us, ABOUT)
        elif ob.met_at_us is None:
            if trigger.ended_at_us is not None:
                ctx.restore_trigger(key, ABOUT)
        elif trigger.ended_at_us is None:
            ctx.end_trigger(key, ob.met_at_us, ABOUT)
        else:
            trigger.ended_at_us = ob.met_at_us

    def _first_orphaned(self, ctx: Context) -> tuple[int, str, str] | None:
        """The first time no owner_departed trigger covers at which the identity was active and
        its owner (previous or current) terminated: (time, owner, the owner's termination
        event). A trigger covers the time from it until it was met (for ever while unmet)."""
        s = ctx.s
        covered = [
            (t.at_us, LATEST_US if t.ended_at_us is None else max(t.ended_at_us, t.at_us + 1))
            for t in s.triggers.values()
            if t.trigger == "owner_departed"
        ]
        periods = []
        if s.previous_owner_id is not None:
            periods.append(
                (
                    s.previous_owner_id,
                    s.previous_owner_timeline,
                    s.previous_owner_since_us,
                    s.previous_owner_until_us,
                )
            )
        if s.owner_id is not None:
            periods.append((s.owner_id, s.owner_timeline, s.owner_since_us, LATEST_US))
        for owner_id, timeline, since_us, until_us in periods:
            candidates = {since_us}
            candidates.update(t for t, _, _ in timeline if since_us <= t < until_us)
            candidates.update(
                t for t, value, _ in s.transitions if value == "active" and since_us <= t < until_us
            )
            for at_us in sorted(candidates):
                if any(start <= at_us < end for start, end in covered):
                    continue
                if ctx.status_at(at_us + 1) != "active":
                    continue
                entry = _entry_at(timeline, at_us)
                if entry is not None and entry[1] == "terminated":
                    return at_us, owner_id, entry[2]
        return None

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
        for at_us, status, _ in s.transitions:
            # The first termination of the identity itself since the trigger (it may be active
            # again by now: its own events can arrive behind its owners').
            if status == "terminated" and at_us >= ob.triggered_at_us:
                retired = Landing(at_us, "retired")
                break
        owned = previously = None
        if s.owner_id is not None and s.owner_heard:
            owned = _owned_by_active(ob, trigger, s.owner_id, s.owner_timeline, s.owner_since_us)
        if s.previous_owner_id is not None:
            previously = _owned_by_active(
                ob,
                trigger,
                s.previous_owner_id,
                s.previous_owner_timeline,
                s.previous_owner_since_us,
            )
            if previously is not None and previously.at_us >= s.previous_owner_until_us:
                previously = None
        return earliest(retired, previously, owned)

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
