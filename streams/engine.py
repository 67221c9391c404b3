"""The drift engine: a pure step function from (identity state, message, time) to (state, outputs).

The engine does no I/O and reads no clock: `now_us` is an input. The same engine runs in replay
(event time) and in the live runtime (watermarks), one identity at a time.

Each step does three things, and this file does only the first:

1. update the facts the message carries (status, entitlements, devices, exceptions, owners),
   dropping repeats and stale events (`state.Version`);
2. let each trigger's rule react (`streams/rules/`: what opens obligations, what meets them);
3. fire what the clock has made due (`streams/lifecycle.py`: the same for every rule).

Events can arrive out of order between streams. Facts are versioned per thing, and a rule looks at
what the identity held *at the trigger's time*, so a revoke or a grant that arrives after the
trigger it relates to is still judged correctly.

The step updates the state it is given in place and returns it: callers hand over the state and
keep only what comes back (no copies of whole identity states on the hot path).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable
from typing import Final

from msgspec import UNSET

from accessdrift.models.clock import MAX_DURATION_S, US_PER_S
from accessdrift.models.findings import FindingRecord
from accessdrift.models.messages import (
    DeviceSignal,
    EntitlementChange,
    ExceptionGrant,
    IdentityMessage,
    OwnerLink,
    OwnerSignal,
    StatusChange,
)
from accessdrift.models.policy import Policy
from accessdrift.models.state import (
    NEVER_US,
    Admission,
    DeviceView,
    Grant,
    IdentityState,
    OwnedLink,
    Version,
    Waiver,
    grant_key,
)
from accessdrift.streams.lifecycle import Context, Limits, Step, device_key
from accessdrift.streams.rules import RULES, Rule, StatusChanged
from accessdrift.streams.rules.owner_departed import owner_key

__all__ = ["Engine", "Limits", "Step"]

_Handler = Callable[[Context, object], Admission]


def _implementing(hook: str) -> tuple[Rule, ...]:
    return tuple(
        rule for rule in RULES.values() if getattr(type(rule), hook) is not getattr(Rule, hook)
    )


DEFAULT_LIMITS: Final = Limits()


class Engine:
    """The drift engine for one policy, one grace period (seconds of lateness tolerated after a
    deadline before it fires) and one set of history limits."""

    def __init__(
        self, policy: Policy, grace_s: float = 0.0, limits: Limits = DEFAULT_LIMITS
    ) -> None:
        if not 0 <= grace_s <= MAX_DURATION_S:
            raise ValueError(f"grace must be between 0 and {MAX_DURATION_S} seconds")
        self.policy = policy
        self.grace_us = round(grace_s * US_PER_S)
        self.limits = limits
        self.rules = RULES
        # Each hook goes only to the rules that implement it, in the rules' order.
        self._on_status_rules = _implementing("on_status")
        self._on_grant_rules = _implementing("on_grant")
        self._on_device_rules = _implementing("on_device")
        self._on_owner_rules = _implementing("on_owner")
        self._per_grant: Final = frozenset(t for t, rule in RULES.items() if rule.per_grant)
        self._handlers: Final[dict[type, _Handler]] = {
            StatusChange: self._on_status,  # type: ignore[dict-item]
            EntitlementChange: self._on_entitlement,  # type: ignore[dict-item]
            ExceptionGrant: self._on_exception,  # type: ignore[dict-item]
            DeviceSignal: self._on_device,  # type: ignore[dict-item]
            OwnerLink: self._on_owner_link,  # type: ignore[dict-item]
            OwnerSignal: self._on_owner_signal,  # type: ignore[dict-item]
        }

    # -- public interface --------------------------------------------------------------------

    @staticmethod
    def new_state(identity_id: str) -> IdentityState:
        """The state of an identity nothing is known about yet."""
        return IdentityState(identity_id=identity_id)

    def apply(self, state: IdentityState, message: IdentityMessage, now_us: int) -> Step:
        """Apply one message keyed to `state.identity_id`, then fire whatever is due at `now_us`."""
        ctx = self._context(state, now_us)
        return ctx.step(self._handlers[type(message)](ctx, message))

    def advance(self, state: IdentityState, now_us: int) -> Step:
        """Let time pass to `now_us` with no new message: fire every obligation now overdue."""
        return self._context(state, now_us).step(None)

    def wake_us(self, state: IdentityState) -> int | None:
        """The earliest time after which `advance` would emit something, or None."""
        return self._context(state, NEVER_US).wake_us()

    def open_findings(self, state: IdentityState) -> list[FindingRecord]:
        """The open record of every finding of `state` open now (as it was published)."""
        ctx = self._context(state, NEVER_US)
        return [ctx.finding(ob) for ob in state.obligations.values() if ob.state == "open"]

    def _context(self, state: IdentityState, now_us: int) -> Context:
        return Context(state, now_us, self.policy, self.grace_us, self.limits, self.rules)

    # -- facts: each handler says whether it applied the message, or why not --------------------

    def _on_status(self, ctx: Context, m: StatusChange) -> Admission:
        s = ctx.s
        at_us = m.occurred_at_us
        if (admission := s.status_version.admit(at_us, m.event_id)) != "applied":
            return admission
        # A partial update changes only the fields it carries (see `StatusChange`).
        status = s.status if m.status is UNSET else m.status
        role = s.role if m.role is UNSET else m.role
        owner_id = s.owner_id if m.owner_id is UNSET else m.owner_id
        if m.identity_kind is not UNSET:
            s.identity_kind = m.identity_kind
        previous_role, s.role = s.role, role
        if status is None:
            # Only a partial update without a status leaves it unknown: nothing to judge until
            # an update states it.
            if owner_id != s.owner_id:
                self._change_owner(ctx, m, owner_id)
            return "applied"
        change = StatusChanged(m.event_id, at_us, status, s.status, role, previous_role)
        if change.changed:
            s.status = status
            s.status_since_us, s.status_since_event_id = at_us, m.event_id
            s.transitions.append((at_us, status, m.event_id))
            for nhi_id, link in sorted(s.owned.items()):
                # An identity unlinked after this change was still owned when it happened.
                if link.linked or link.changed_at_us > at_us:
                    ctx.messages.append(self._owner_signal(s, nhi_id))
        if owner_id != s.owner_id:
            self._change_owner(ctx, m, owner_id)
        for rule in self._on_status_rules:
            rule.on_status(ctx, change)
        ctx.forget_old()
        return "applied"

    def _on_entitlement(self, ctx: Context, m: EntitlementChange) -> Admission:
        s = ctx.s
        key = grant_key(m.system, m.entitlement)
        at_us = m.occurred_at_us
        grant = s.grants.get(key)
        new_interval = False
        if grant is None:
            granted = m.action == "granted"
            grant = Grant(
                m.system,
                m.entitlement,
                m.kind,
                m.privileged,
                m.device_id,
                m.requires_trusted_device,
                held=granted,
                version=Version(at_us, [m.event_id]),
                granted_at_us=at_us if granted else None,
                grant_event_id=m.event_id if granted else None,
                revoked_at_us=None if granted else at_us,
            )
            s.grants[key] = grant
            new_interval = granted
        elif (admission := grant.version.admit(at_us, m.event_id)) != "applied":
            return admission
        elif m.action == "granted":
            if not grant.held:
                new_interval = True
                grant.held = True
                grant.granted_at_us, grant.grant_event_id = at_us, m.event_id
                grant.revoked_at_us = None
                grant.flagged_inactive = False
            grant.kind, grant.privileged = m.kind, m.privileged
            grant.device_id = m.device_id
            grant.requires_trusted_device = m.requires_trusted_device
        elif grant.held:
            grant.held = False
            grant.revoked_at_us = at_us

        rules = self.rules
        on_grant = s.by_grant.get(key)
        if on_grant:
            for finding_id in list(on_grant):
                ob = s.obligations.get(finding_id)
                if ob is not None:
                    trigger = s.triggers.get(ob.trigger_key) if ob.trigger_key else None
                    rules[ob.trigger].reassess(ctx, ob, trigger)
        if s.triggers:
            per_grant = self._per_grant
            for trigger_key, trigger in list(s.triggers.items()):
                if trigger.trigger in per_grant:
                    rules[trigger.trigger].oblige(ctx, trigger_key, trigger, grant)
        for rule in self._on_grant_rules:
            rule.on_grant(ctx, grant, new_interval)
        return "applied"

    def _on_exception(self, ctx: Context, m: ExceptionGrant) -> Admission:
        s = ctx.s
        waiver = s.waivers.get(m.exception_id)
        if waiver is None:
            waiver = s.waivers[m.exception_id] = Waiver(
                m.exception_id,
                m.system,
                m.entitlement,
                m.occurred_at_us,
                m.expires_at_us,
                Version(),
            )
        if (admission := waiver.version.admit(m.occurred_at_us, m.event_id)) != "applied":
            return admission
        waiver.system, waiver.entitlement = m.system, m.entitlement
        waiver.approved_at_us, waiver.expires_at_us = m.occurred_at_us, m.expires_at_us
        # What is still pending may now be deferred; a finding already open stays open.
        for ob in s.obligations.values():
            if ob.state == "pending":
                ctx.schedule(ob)
        return "applied"

    def _on_device(self, ctx: Context, m: DeviceSignal) -> Admission:
        s = ctx.s
        at_us = m.occurred_at_us
        view = s.devices.get(m.device_id)
        if view is None:
            view = s.devices[m.device_id] = DeviceView(m.posture, m.bound, at_us, Version())
        if (admission := view.version.admit(at_us, m.event_id)) != "applied":
            return admission
        if (view.posture, view.bound) != (m.posture, m.bound):
            if view.trusted:
                s.trust_spans.append((view.since_us, at_us, m.device_id))
            view.posture, view.bound, view.since_us = m.posture, m.bound, at_us
        if view.trusted:
            heapq.heappush(s.trusted_heap, (view.since_us, m.device_id))
        else:
            self._disprove_device(ctx, m.device_id, view.since_us)
        for rule in self._on_device_rules:
            rule.on_device(ctx, m, view)
        ctx.forget_old()
        return "applied"

    def _disprove_device(self, ctx: Context, device_id: str, untrusted_since_us: int) -> None:
        """Device `device_id` has not been trusted since `untrusted_since_us`: what it seemed to
        meet at or after then (on data that arrived before this) it did not meet after all."""
        for ob in ctx.relying_on(device_key(device_id)):
            if ob.opened or ob.met_at_us is None or ob.met_at_us < untrusted_since_us:
                continue
            ctx.unmeet(ob)
            trigger = ctx.s.triggers.get(ob.trigger_key) if ob.trigger_key else None
            self.rules[ob.trigger].reassess(ctx, ob, trigger)

    def _on_owner_link(self, ctx: Context, m: OwnerLink) -> Admission:
        s = ctx.s
        link = s.owned.get(m.nhi_id)
        if link is None:
            link = s.owned[m.nhi_id] = OwnedLink(m.linked, m.occurred_at_us, Version())
        if (admission := link.version.admit(m.occurred_at_us, m.event_id)) != "applied":
            return admission
        link.linked, link.changed_at_us = m.linked, m.occurred_at_us
        if m.linked:
            ctx.messages.extend(self._owner_history(ctx, m.nhi_id, m.occurred_at_us))
        return "applied"

    def _on_owner_signal(self, ctx: Context, m: OwnerSignal) -> Admission:
        s = ctx.s
        if m.owner_id == s.owner_id:
            if (admission := s.owner_version.admit(m.occurred_at_us, m.event_id)) != "applied":
                return admission
            s.owner_heard = True
            timeline = s.owner_timeline
        elif m.owner_id == s.previous_owner_id:
            admission = s.previous_owner_version.admit(m.occurred_at_us, m.event_id)
            if admission != "applied":
                return admission
            timeline = s.previous_owner_timeline
        else:
            return "stale"  # from an owner the identity no longer has
        if m.status is not None:
            timeline.append((m.occurred_at_us, m.status, m.event_id))
            timeline.sort(key=lambda change: change[0])
            del timeline[: max(0, len(timeline) - ctx.limits.owner_timeline)]
        for rule in self._on_owner_rules:
            rule.on_owner(ctx, m)
        return "applied"

    # -- owners and their non-human identities -----------------------------------------------

    @staticmethod
    def _owner_history(ctx: Context, nhi_id: str, since_us: int) -> list[OwnerSignal]:
        """The answer to a link made at `since_us`: the status this identity had then and every
        change since, as far as it remembers (events for it may have arrived ahead of the link).
        Answered even when this identity is unknown (status None), so that the non-human
        identity knows it has heard all its new owner can tell."""
        s = ctx.s
        transitions = s.transitions
        if not transitions:
            return [OwnerSignal(nhi_id, "", NEVER_US, s.identity_id, None)]
        start = max(0, bisect_right(transitions, since_us, key=lambda change: change[0]) - 1)
        return [
            OwnerSignal(nhi_id, event_id, at_us, s.identity_id, status)
            for at_us, status, event_id in transitions[start:]
        ]

    @staticmethod
    def _owner_signal(s: IdentityState, nhi_id: str) -> OwnerSignal:
        return OwnerSignal(
            identity_id=nhi_id,
            event_id=s.status_since_event_id,
            occurred_at_us=s.status_since_us,
            owner_id=s.identity_id,
            status=s.status,
        )

    def _change_owner(self, ctx: Context, m: StatusChange, owner_id: str | None) -> None:
        s = ctx.s
        if s.previous_owner_id is not None and s.previous_owner_id not in (s.owner_id, owner_id):
            # The owner before last is forgotten: what its activity met can no longer be checked
            # against its reports.
            for ob in ctx.relying_on(owner_key(s.previous_owner_id)):
                ctx.unrely(ob)
                ob.final = True
        if s.owner_id is not None:
            ctx.messages.append(
                OwnerLink(s.owner_id, m.event_id, m.occurred_at_us, s.identity_id, linked=False)
            )
        if owner_id is not None:
            ctx.messages.append(
                OwnerLink(owner_id, m.event_id, m.occurred_at_us, s.identity_id, linked=True)
            )
        s.previous_owner_id = s.owner_id
        s.previous_owner_since_us, s.previous_owner_until_us = s.owner_since_us, m.occurred_at_us
        s.previous_owner_timeline, s.previous_owner_version = s.owner_timeline, s.owner_version
        s.owner_id = owner_id
        s.owner_since_us = m.occurred_at_us
        s.owner_timeline = []
        s.owner_version = Version()
        s.owner_heard = False
