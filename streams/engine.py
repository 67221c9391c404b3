"""The drift engine: a pure step function from (identity state, message, time) to (state, outputs).

The engine does no I/O and reads no clock: `now_us` is an input. The same engine runs in replay
(event time) and in the live runtime (wall time), one identity at a time.

Semantics, in event time:

* A trigger (a state change) opens obligations, each with a deadline = trigger time + window.
* An obligation is met on time when what it asks for lands at or before its deadline (or before
  an approved exception covering it expires); nothing is reported.
* It fires, opening a finding, once `now_us` passes deadline + grace with nothing landed.
* When it is met after its deadline a resolved record follows. If the landing change arrives
  before the clock has passed the deadline but occurred after it (late data), the open and the
  resolved record are emitted together: the control still failed.
* When the trigger's reason goes away (the identity is active again, the device compliant again,
  the owner back) its obligations end the same way, judged by when that happened.

Events can arrive out of order between streams. Facts are versioned per thing, and a trigger
looks at what the identity held *at the trigger's time*, so a revoke or a grant that arrives after
the trigger it relates to is still judged correctly.

The step updates the state it is given in place and returns it: callers hand over the state and
keep only what comes back (no copies of whole identity states on the hot path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.findings import (
    OffboardingRecord,
    Record,
    RevokedEntitlement,
    finding_record,
    stable_id,
)
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
    DONE,
    NEVER_US,
    OPEN,
    PENDING,
    DeviceView,
    Grant,
    IdentityState,
    Obligation,
    OwnedLink,
    TriggerState,
    Waiver,
    grant_key,
)
from accessdrift.models.vocabulary import (
    DEVICE_BOUND_KINDS,
    LIVE_ACCESS_KINDS,
    UNTRUSTED_POSTURES,
    Severity,
    Trigger,
)

_INACTIVE: Final = frozenset({"suspended", "terminated"})
#: Triggers with one obligation on the identity itself rather than one per entitlement.
_IDENTITY_WIDE: Final = frozenset({"joiner", "owner_departed"})

#: How long ended triggers and old status changes are remembered so that events arriving late
#: between streams are still judged correctly. Events later than this are judged on what is left.
LATE_EVENT_HORIZON_S: Final = 7 * 86_400


class Step:
    """What one engine step returns.

    `state`: the identity's new state. `applied`: False when the message was a repeat or stale and
    changed nothing. `records`: findings and offboarding records, in the order they happened.
    `messages`: messages for other identities, to deliver keyed by their `identity_id`.
    `wake_us`: the earliest time at which `advance` could fire something, or None.
    """

    __slots__ = ("applied", "messages", "records", "state", "wake_us")

    def __init__(
        self,
        state: IdentityState,
        applied: bool,
        records: list[Record],
        messages: list[IdentityMessage],
        wake_us: int | None,
    ) -> None:
        self.state = state
        self.applied = applied
        self.records = records
        self.messages = messages
        self.wake_us = wake_us


class _Out:
    __slots__ = ("messages", "records")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.messages: list[IdentityMessage] = []


def _trigger_key(trigger: TriggerState) -> str:
    return (
        f"{trigger.trigger}\x1f{trigger.event_id}\x1f{trigger.device_id or ''}\x1f{trigger.at_us}"
    )


def _active(s: IdentityState, trigger: Trigger, device_id: str | None = None) -> str | None:
    """The key of the trigger of this type (for this device) still in force, if any."""
    for key, candidate in s.triggers.items():
        if (
            candidate.trigger == trigger
            and candidate.ended_at_us is None
            and candidate.device_id == device_id
        ):
            return key
    return None


class Engine:
    """The drift engine for one policy and one grace period (seconds of lateness tolerated)."""

    def __init__(self, policy: Policy, grace_s: float = 0.0) -> None:
        self.policy = policy
        self.grace_us = round(grace_s * US_PER_S)
        self.horizon_us = LATE_EVENT_HORIZON_S * US_PER_S
        self._handlers: dict[type, Callable[[IdentityState, object, int, _Out], bool]] = {
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
        out = _Out()
        applied = self._handlers[type(message)](state, message, now_us, out)
        return self._settle_time(state, applied, now_us, out)

    def advance(self, state: IdentityState, now_us: int) -> Step:
        """Let time pass to `now_us` with no new message: fire every obligation now overdue."""
        return self._settle_time(state, False, now_us, _Out())

    def wake_us(self, state: IdentityState) -> int | None:
        """The earliest time after which `advance` would emit something, or None."""
        earliest: int | None = None
        for ob in state.obligations.values():
            if ob.state == PENDING:
                fire_after = self._fire_after(state, ob)[0]
                if earliest is None or fire_after < earliest:
                    earliest = fire_after
        if state.status == "terminated":
            for trigger in self._awaiting_evidence(state):
                ready_after = trigger.at_us + self.grace_us
                if earliest is None or ready_after < earliest:
                    earliest = ready_after
        return earliest

    def _settle_time(self, state: IdentityState, applied: bool, now_us: int, out: _Out) -> Step:
        """Fire what is overdue at `now_us` and emit offboarding evidence that is due."""
        if state.obligations:
            self._fire_due(state, now_us, out)
        if state.status == "terminated":
            self._emit_evidence(state, now_us, out)
        elif not state.obligations:
            return Step(state, applied, out.records, out.messages, None)
        return Step(state, applied, out.records, out.messages, self.wake_us(state))

    # -- handlers: each returns whether the message changed anything -------------------------

    def _on_status(self, s: IdentityState, m: StatusChange, now_us: int, out: _Out) -> bool:
        at = m.occurred_at_us
        if (at, m.event_id) <= (s.status_at_us, s.status_event_id):
            return False
        previous, previous_role = s.status, s.role
        s.identity_kind = m.identity_kind
        s.status_at_us, s.status_event_id = at, m.event_id
        s.role = m.role
        if m.status != previous:
            s.status = m.status
            s.status_since_us, s.status_since_event_id = at, m.event_id
            s.transitions.append((at, m.status))
            for nhi_id, link in sorted(s.owned.items()):
                # An identity unlinked after this change was still owned when it happened.
                if link.linked or link.changed_at_us > at:
                    out.messages.append(self._owner_signal(s, nhi_id))
        if m.owner_id != s.owner_id:
            self._change_owner(s, m, out)

        if m.status == "active":
            for key, trigger in list(s.triggers.items()):
                if trigger.trigger in ("leaver", "suspension") and trigger.ended_at_us is None:
                    self._close(s, key, at, now_us, out)
            self._unflag_grants_after(s, at, out)
            if previous != "active" and s.identity_kind == "human":
                self._open(s, TriggerState("joiner", m.event_id, at), now_us, out)
            elif previous == "active" and previous_role and m.role and previous_role != m.role:
                self._open(s, TriggerState("mover", m.event_id, at), now_us, out)
        else:
            if (joiner_key := _active(s, "joiner")) is not None:
                self._close(s, joiner_key, at, now_us, out)
            if m.status == "terminated":
                for key, trigger in list(s.triggers.items()):
                    if trigger.trigger == "mover" and trigger.ended_at_us is None:
                        self._close(s, key, at, now_us, out)
            if m.status != previous:
                trigger_name: Trigger = "leaver" if m.status == "terminated" else "suspension"
                self._open(s, TriggerState(trigger_name, m.event_id, at), now_us, out)
                for grant in list(s.grants.values()):
                    if (
                        grant.granted_at_us is not None
                        and grant.granted_at_us > at
                        and not grant.flagged_inactive
                    ):
                        self._flag_inactive_grant(s, grant, now_us, out)
        self._check_owner_departed(s, now_us, out)
        self._forget_old(s, now_us)
        return True

    def _on_entitlement(
        self, s: IdentityState, m: EntitlementChange, now_us: int, out: _Out
    ) -> bool:
        key = grant_key(m.system, m.entitlement)
        at = m.occurred_at_us
        grant = s.grants.get(key)
        if grant is not None and (at, m.event_id) <= (grant.changed_at_us, grant.event_id):
            return False
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
                granted,
                at,
                m.event_id,
                at if granted else None,
                m.event_id if granted else None,
            )
            s.grants[key] = grant
            new_interval = granted
        else:
            if m.action == "granted":
                if not grant.held:
                    new_interval = True
                    grant.held = True
                    grant.granted_at_us, grant.grant_event_id = at, m.event_id
                    grant.flagged_inactive = False
                grant.kind, grant.privileged = m.kind, m.privileged
                grant.device_id = m.device_id
                grant.requires_trusted_device = m.requires_trusted_device
            else:
                grant.held = False
            grant.changed_at_us, grant.event_id = at, m.event_id

        if s.obligations:
            for ob in list(s.obligations.values()):
                if ob.system == m.system and ob.entitlement == m.entitlement:
                    self._settle_from_grant(s, ob, grant, now_us, out)
        if s.triggers:
            for tkey, trigger in s.triggers.items():
                if trigger.trigger not in _IDENTITY_WIDE:
                    self._oblige(s, tkey, trigger, grant, now_us, out)
        if new_interval and not grant.flagged_inactive and self._status_at(s, at) in _INACTIVE:
            self._flag_inactive_grant(s, grant, now_us, out)
        return True

    def _on_exception(self, s: IdentityState, m: ExceptionGrant, now_us: int, out: _Out) -> bool:
        waiver = s.waivers.get(m.exception_id)
        if waiver is not None and (m.occurred_at_us, m.event_id) <= (
            waiver.approved_at_us,
            waiver.event_id,
        ):
            return False
        s.waivers[m.exception_id] = Waiver(
            exception_id=m.exception_id,
            system=m.system,
            entitlement=m.entitlement,
            approved_at_us=m.occurred_at_us,
            expires_at_us=m.expires_at_us,
            event_id=m.event_id,
        )
        return True

    def _on_device(self, s: IdentityState, m: DeviceSignal, now_us: int, out: _Out) -> bool:
        at = m.occurred_at_us
        view = s.devices.get(m.device_id)
        if view is not None and (at, m.event_id) <= (view.changed_at_us, view.event_id):
            return False
        s.devices[m.device_id] = DeviceView(m.posture, m.bound, at, m.event_id)
        key = _active(s, "device_untrusted", m.device_id)
        if m.posture == "compliant":
            if key is not None:
                self._close(s, key, at, now_us, out)
            if m.bound:
                self._on_trusted_device(s, m.device_id, at, now_us, out)
        elif m.bound and m.posture in UNTRUSTED_POSTURES:
            window_us = self.policy.device_untrusted.window_s(m.posture) * US_PER_S
            if key is None:
                trigger = TriggerState(
                    "device_untrusted",
                    m.event_id,
                    at,
                    device_id=m.device_id,
                    posture=m.posture,
                    deadline_us=at + window_us,
                )
                self._open(s, trigger, now_us, out)
            else:
                self._escalate(s, key, m.posture, at + window_us)
        if s.settled and not (m.bound and m.posture == "compliant"):
            self._recheck_joiners(s, m.device_id, at, now_us, out)
        self._forget_old(s, now_us)
        return True

    def _on_owner_link(self, s: IdentityState, m: OwnerLink, now_us: int, out: _Out) -> bool:
        link = s.owned.get(m.nhi_id)
        if link is not None and (m.occurred_at_us, m.event_id) <= (
            link.changed_at_us,
            link.event_id,
        ):
            return False
        s.owned[m.nhi_id] = OwnedLink(m.linked, m.occurred_at_us, m.event_id)
        if m.linked and s.status is not None:
            out.messages.append(self._owner_signal(s, m.nhi_id))
        return True

    def _on_owner_signal(self, s: IdentityState, m: OwnerSignal, now_us: int, out: _Out) -> bool:
        if m.owner_id != s.owner_id:
            return self._on_former_owner_signal(s, m, now_us, out)
        if (m.occurred_at_us, m.event_id) <= (s.owner_status_at_us, s.owner_status_event_id):
            return False
        s.owner_status = m.status
        s.owner_status_at_us, s.owner_status_event_id = m.occurred_at_us, m.event_id
        self._check_owner_departed(s, now_us, out)
        return True

    # -- owners and non-human identities -----------------------------------------------------

    def _on_former_owner_signal(
        self, s: IdentityState, m: OwnerSignal, now_us: int, out: _Out
    ) -> bool:
        """The previous owner's termination, arriving after the identity changed owner: the
        identity was orphaned from then until the change (late data between identities)."""
        if (
            m.owner_id != s.previous_owner_id
            or m.status != "terminated"
            or s.identity_kind == "human"
            or m.occurred_at_us >= s.previous_owner_until_us
            or _active(s, "owner_departed") is not None
        ):
            return False
        at = max(m.occurred_at_us, s.previous_owner_since_us)
        if self._status_at(s, at + 1) != "active":
            return False
        self._open_owner_departed(s, m.event_id, at, m.owner_id, now_us, out)
        self._check_owner_departed(s, now_us, out)
        return True

    def _open_owner_departed(
        self, s: IdentityState, event_id: str, at: int, owner_id: str, now_us: int, out: _Out
    ) -> None:
        deadline_us = at + self.policy.owner_departed.window_s * US_PER_S
        trigger = TriggerState(
            "owner_departed", event_id, at, owner_id=owner_id, deadline_us=deadline_us
        )
        self._open(s, trigger, now_us, out)

    @staticmethod
    def _owner_signal(s: IdentityState, nhi_id: str) -> OwnerSignal:
        assert s.status is not None
        return OwnerSignal(
            identity_id=nhi_id,
            event_id=s.status_since_event_id,
            occurred_at_us=s.status_since_us,
            owner_id=s.identity_id,
            status=s.status,
        )

    @staticmethod
    def _change_owner(s: IdentityState, m: StatusChange, out: _Out) -> None:
        if s.owner_id is not None:
            out.messages.append(
                OwnerLink(s.owner_id, m.event_id, m.occurred_at_us, s.identity_id, linked=False)
            )
        if m.owner_id is not None:
            out.messages.append(
                OwnerLink(m.owner_id, m.event_id, m.occurred_at_us, s.identity_id, linked=True)
            )
        s.previous_owner_id = s.owner_id
        s.previous_owner_since_us, s.previous_owner_until_us = s.owner_since_us, m.occurred_at_us
        s.owner_id = m.owner_id
        s.owner_since_us = m.occurred_at_us
        s.owner_status = None
        s.owner_status_at_us, s.owner_status_event_id = NEVER_US, ""

    def _check_owner_departed(self, s: IdentityState, now_us: int, out: _Out) -> None:
        if s.identity_kind == "human":
            return
        key = _active(s, "owner_departed")
        if key is None:
            if s.status == "active" and s.owner_id is not None and s.owner_status == "terminated":
                at = max(s.owner_status_at_us, s.owner_since_us, s.status_since_us)
                self._open_owner_departed(s, s.owner_status_event_id, at, s.owner_id, now_us, out)
            return
        trigger = s.triggers[key]
        if s.status == "terminated":
            self._meet_trigger(s, key, s.status_since_us, "retired", now_us, out)
        elif s.owner_status == "active":
            landed_at = max(s.owner_status_at_us, s.owner_since_us)
            resolution = "ended" if s.owner_id == trigger.owner_id else "reowned"
            self._meet_trigger(s, key, landed_at, resolution, now_us, out)

    # -- triggers and obligations ------------------------------------------------------------

    def _open(self, s: IdentityState, trigger: TriggerState, now_us: int, out: _Out) -> None:
        key = _trigger_key(trigger)
        s.triggers[key] = trigger
        if trigger.trigger in ("joiner", "owner_departed"):
            self._oblige_identity(s, key, trigger, now_us, out)
        else:
            for grant in list(s.grants.values()):
                self._oblige(s, key, trigger, grant, now_us, out)

    def _oblige_identity(
        self, s: IdentityState, key: str, trigger: TriggerState, now_us: int, out: _Out
    ) -> None:
        """Open the one identity-wide obligation of a joiner or owner_departed trigger."""
        if trigger.trigger == "joiner":
            deadline_us = trigger.at_us + self.policy.joiner.window_s * US_PER_S
            severity = self.policy.joiner.severity
            context = None
        else:
            assert trigger.deadline_us is not None
            deadline_us = trigger.deadline_us
            severity = self.policy.owner_departed.severity
            context = trigger.owner_id
        ob = Obligation(
            finding_id=stable_id(
                s.identity_id, trigger.trigger, trigger.event_id, str(trigger.at_us)
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
            severity=severity,
            context=context,
        )
        s.obligations[ob.finding_id] = ob
        if trigger.trigger == "joiner":
            self._meet_joiner(s, ob, exclude=None, now_us=now_us, out=out)

    def _meet_joiner(
        self, s: IdentityState, ob: Obligation, exclude: str | None, now_us: int, out: _Out
    ) -> None:
        """Settle a joiner obligation with a bound compliant device, if there is one; the
        obligation remembers which device, in case a late event shows it was not one."""
        best: tuple[int, str] | None = None
        for device_id, view in s.devices.items():
            if view.bound and view.posture == "compliant" and device_id != exclude:
                candidate = (view.changed_at_us, device_id)
                best = candidate if best is None else min(best, candidate)
        if best is not None:
            ob.context = best[1]
            self._settle(s, ob, max(best[0], ob.triggered_at_us), "trusted_device", now_us, out)

    def _recheck_joiners(
        self, s: IdentityState, device_id: str, at: int, now_us: int, out: _Out
    ) -> None:
        """Device `device_id` was not a bound compliant device from `at`: a joiner obligation it
        met at or after `at` (on data that arrived before this) was not met by it after all."""
        for ob in list(s.settled.values()):
            if ob.trigger != "joiner" or ob.context != device_id or ob.opened:
                continue
            trigger = s.triggers.get(ob.trigger_key or "")
            if trigger is None or trigger.ended_at_us is not None:
                continue
            if ob.met_at_us is None or at > ob.met_at_us:
                continue
            del s.settled[ob.finding_id]
            ob.state, ob.met_at_us, ob.resolution, ob.context = PENDING, None, None, None
            s.obligations[ob.finding_id] = ob
            self._meet_joiner(s, ob, exclude=device_id, now_us=now_us, out=out)

    def _oblige(
        self,
        s: IdentityState,
        key: str,
        trigger: TriggerState,
        grant: Grant,
        now_us: int,
        out: _Out,
    ) -> None:
        """Open the obligation `trigger` places on `grant`, if any and if not already open."""
        at = trigger.at_us
        granted_after = False
        match trigger.trigger:
            case "leaver":
                applies = grant.held_at(at)
            case "suspension":
                applies = grant.kind in LIVE_ACCESS_KINDS and grant.held_at(at)
            case "mover":
                applies = (
                    grant.privileged
                    and grant.granted_at_us is not None
                    and grant.granted_at_us < at
                    and grant.held_at(at)
                )
            case "device_untrusted":
                granted_after = (
                    grant.held
                    and grant.granted_at_us is not None
                    and grant.granted_at_us > at
                    and (trigger.ended_at_us is None or grant.granted_at_us < trigger.ended_at_us)
                )
                applies = (grant.held_at(at) or granted_after) and self._needs_trusted_device(
                    s, trigger, grant
                )
            case _:
                applies = False
        if not applies:
            return
        finding_id = stable_id(
            s.identity_id,
            trigger.trigger,
            trigger.event_id,
            grant.system,
            grant.entitlement,
            trigger.device_id,
            grant.grant_event_id if granted_after else None,
        )
        if finding_id in s.obligations or finding_id in s.settled:
            return
        triggered_at = at
        match trigger.trigger:
            case "leaver":
                policy = self.policy.leaver
                window_s = policy.privileged_window_s if grant.privileged else policy.window_s
                deadline_us = at + window_s * US_PER_S
            case "suspension":
                deadline_us = at + self.policy.suspension.window_s * US_PER_S
            case "mover":
                deadline_us = at + self.policy.mover.window_s * US_PER_S
            case _:
                assert trigger.deadline_us is not None
                assert trigger.posture is not None
                deadline_us = trigger.deadline_us
                if granted_after:
                    assert grant.granted_at_us is not None
                    triggered_at = grant.granted_at_us
                    window_us = self.policy.device_untrusted.window_s(trigger.posture) * US_PER_S
                    deadline_us = triggered_at + window_us
        ob = Obligation(
            finding_id=finding_id,
            trigger_key=key,
            trigger=trigger.trigger,
            trigger_event_id=trigger.event_id,
            system=grant.system,
            entitlement=grant.entitlement,
            entitlement_kind=grant.kind,
            device_id=trigger.device_id,
            privileged=grant.privileged,
            triggered_at_us=triggered_at,
            deadline_us=deadline_us,
            severity=self._severity(trigger.trigger, grant.privileged),
            context=trigger.posture,
        )
        s.obligations[finding_id] = ob
        if trigger.trigger == "leaver":
            trigger.evidence_sent = False
        self._settle_from_grant(s, ob, grant, now_us, out)

    def _needs_trusted_device(self, s: IdentityState, trigger: TriggerState, grant: Grant) -> bool:
        if grant.kind in DEVICE_BOUND_KINDS and grant.device_id == trigger.device_id:
            return True
        return grant.requires_trusted_device and (
            self._compliant_since(s, exclude=trigger.device_id) is None
        )

    @staticmethod
    def _compliant_since(s: IdentityState, exclude: str | None) -> int | None:
        """Since when the identity has had a bound compliant device (other than `exclude`)."""
        since: int | None = None
        for device_id, view in s.devices.items():
            if view.bound and view.posture == "compliant" and device_id != exclude:
                since = view.changed_at_us if since is None else min(since, view.changed_at_us)
        return since

    def _severity(self, trigger: Trigger, privileged: bool) -> Severity:
        section = getattr(self.policy, trigger)
        severity: Severity = section.severity
        if privileged:
            severity = getattr(section, "privileged_severity", severity)
        return severity

    def _escalate(self, s: IdentityState, key: str, posture: str, deadline_us: int) -> None:
        """An untrusted device got worse: tighten the deadline of what is still pending."""
        trigger = s.triggers[key]
        assert trigger.deadline_us is not None
        trigger.posture = posture  # type: ignore[assignment]
        if deadline_us >= trigger.deadline_us:
            return
        trigger.deadline_us = deadline_us
        for ob in self._obligations_of(s, key):
            if ob.state == PENDING and ob.triggered_at_us == trigger.at_us:
                ob.deadline_us = min(ob.deadline_us, deadline_us)
                ob.context = posture

    def _flag_inactive_grant(self, s: IdentityState, grant: Grant, now_us: int, out: _Out) -> None:
        """A grant landed while the identity was suspended or terminated: a finding at once."""
        assert grant.granted_at_us is not None
        assert grant.grant_event_id is not None
        grant.flagged_inactive = True
        finding_id = stable_id(
            s.identity_id,
            "grant_while_inactive",
            grant.grant_event_id,
            grant.system,
            grant.entitlement,
        )
        ob = Obligation(
            finding_id=finding_id,
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
            severity=self._severity("grant_while_inactive", grant.privileged),
            context=s.status,
        )
        s.obligations[finding_id] = ob
        if not grant.held:
            self._settle(s, ob, grant.changed_at_us, "revoked", now_us, out)

    def _unflag_grants_after(self, s: IdentityState, at: int, out: _Out) -> None:
        """The identity was active again from `at`: a grant after that was not to an inactive one.

        Only reachable when the reactivation arrived after the grant (late data between streams).
        """
        for ob in list(s.obligations.values()):
            if ob.trigger == "grant_while_inactive" and ob.triggered_at_us > at:
                s.grants[grant_key(ob.system or "", ob.entitlement or "")].flagged_inactive = False
                self._withdraw(s, ob, "reactivated", out)

    def _settle_from_grant(
        self, s: IdentityState, ob: Obligation, grant: Grant, now_us: int, out: _Out
    ) -> None:
        """Settle `ob` if what it asks of `grant` has landed, or its trigger has ended."""
        if not grant.held_at(ob.triggered_at_us):
            self._withdraw(s, ob, "withdrawn", out)
            return
        landing: tuple[int, str] | None = None
        if ob.trigger == "mover":
            if grant.changed_at_us > ob.triggered_at_us:
                landing = (grant.changed_at_us, "regranted" if grant.held else "revoked")
        elif not grant.held:
            landing = (grant.changed_at_us, "revoked")
        trigger = s.triggers.get(ob.trigger_key) if ob.trigger_key is not None else None
        ended_at = trigger.ended_at_us if trigger is not None else None
        if ended_at is not None and (landing is None or ended_at < landing[0]):
            landing = (max(ended_at, ob.triggered_at_us), "ended")
        if landing is not None:
            self._settle(s, ob, landing[0], landing[1], now_us, out)

    @staticmethod
    def _withdraw(s: IdentityState, ob: Obligation, resolution: str, out: _Out) -> None:
        """`ob` was never owed: a late event showed its premise false at the trigger's time.

        A finding already published for it is resolved as of the trigger (time to revoke 0).
        """
        if ob.state == OPEN:
            ob.met_at_us = ob.triggered_at_us
            out.records.append(finding_record(ob, s.identity_id, s.identity_kind, resolution))
        del s.obligations[ob.finding_id]

    def _on_trusted_device(
        self, s: IdentityState, device_id: str, at: int, now_us: int, out: _Out
    ) -> None:
        """A bound device became compliant: joiners are met, and so are trusted-device needs."""
        for ob in list(s.obligations.values()):
            if ob.trigger == "joiner":
                ob.context = device_id
                self._settle(s, ob, max(at, ob.triggered_at_us), "trusted_device", now_us, out)
            elif (
                ob.trigger == "device_untrusted"
                and ob.device_id != device_id
                and ob.system is not None
            ):
                grant = s.grants[grant_key(ob.system, ob.entitlement or "")]
                bound_here = grant.kind in DEVICE_BOUND_KINDS and grant.device_id == ob.device_id
                if grant.requires_trusted_device and not bound_here:
                    self._settle(s, ob, max(at, ob.triggered_at_us), "trusted_device", now_us, out)

    def _meet_trigger(
        self, s: IdentityState, key: str, at: int, resolution: str, now_us: int, out: _Out
    ) -> None:
        """The trigger is over as of `at`: settle what is left of it and mark it ended."""
        for ob in self._obligations_of(s, key):
            self._settle(s, ob, max(at, ob.triggered_at_us), resolution, now_us, out)
        s.triggers[key].ended_at_us = at

    def _close(self, s: IdentityState, key: str, at: int, now_us: int, out: _Out) -> None:
        """The trigger's reason went away at `at`: end its obligations and forget it."""
        self._meet_trigger(s, key, at, "ended", now_us, out)

    @staticmethod
    def _obligations_of(s: IdentityState, key: str) -> list[Obligation]:
        """The live (PENDING or OPEN) obligations of a trigger."""
        return [ob for ob in s.obligations.values() if ob.trigger_key == key]

    @staticmethod
    def _settled_of(s: IdentityState, key: str) -> list[Obligation]:
        return [ob for ob in s.settled.values() if ob.trigger_key == key]

    def _effective_deadline(self, s: IdentityState, ob: Obligation) -> tuple[int, str | None]:
        """The deadline after exceptions: the latest expiry of an exception covering it."""
        deadline_us, exception_id = ob.deadline_us, None
        for waiver in s.waivers.values():
            if (
                waiver.covers(ob.system, ob.entitlement, ob.deadline_us)
                and waiver.expires_at_us > deadline_us
            ):
                deadline_us, exception_id = waiver.expires_at_us, waiver.exception_id
        return deadline_us, exception_id

    def _settle(
        self,
        s: IdentityState,
        ob: Obligation,
        landed_at: int,
        resolution: str,
        now_us: int,
        out: _Out,
    ) -> None:
        """What `ob` asks for landed (or its reason ended) at `landed_at`, in event time.

        On time: done, silently. Late, with a finding open: resolve it. Late while the clock has
        not yet passed the deadline + grace: remember the landing and let the deadline fire as
        usual (other late events may still show it on time, or never owed).
        """
        if ob.state == DONE:
            return
        if ob.state == OPEN:
            ob.met_at_us, ob.resolution = landed_at, resolution
            self._resolve(s, ob, out)
            return
        if ob.met_at_us is not None and ob.met_at_us <= landed_at:
            return
        ob.met_at_us, ob.resolution = landed_at, resolution
        if landed_at <= self._effective_deadline(s, ob)[0]:
            self._done(s, ob)

    @staticmethod
    def _done(s: IdentityState, ob: Obligation) -> None:
        ob.state = DONE
        del s.obligations[ob.finding_id]
        if ob.trigger_key is not None:
            s.settled[ob.finding_id] = ob

    def _resolve(self, s: IdentityState, ob: Obligation, out: _Out) -> None:
        assert ob.resolution is not None
        out.records.append(finding_record(ob, s.identity_id, s.identity_kind, ob.resolution))
        self._done(s, ob)

    def _fire(
        self,
        s: IdentityState,
        ob: Obligation,
        now_us: int,
        deadline_us: int,
        exception_id: str | None,
        out: _Out,
    ) -> None:
        """The clock passed the deadline + grace: open the finding (and resolve it at once when
        what it asks for is known to have landed late)."""
        if ob.met_at_us is not None and ob.met_at_us <= deadline_us:
            self._done(s, ob)
            return
        ob.state = OPEN
        ob.opened = True
        ob.detected_at_us = now_us
        ob.exception_id = exception_id
        out.records.append(finding_record(ob, s.identity_id, s.identity_kind))
        if ob.met_at_us is not None:
            self._resolve(s, ob, out)

    def _fire_after(self, s: IdentityState, ob: Obligation) -> tuple[int, str | None]:
        """The time after which `ob` fires if still pending, and the exception that delayed it.

        A grant to an inactive identity has no window: it fires as soon as the clock reaches the
        grant (plus grace), not only once the clock has passed it.
        """
        deadline_us, exception_id = self._effective_deadline(s, ob)
        fire_after = deadline_us + self.grace_us
        if ob.trigger == "grant_while_inactive" and exception_id is None:
            fire_after -= 1
        return fire_after, exception_id

    def _fire_due(self, s: IdentityState, now_us: int, out: _Out) -> None:
        due: list[tuple[int, str, Obligation, str | None]] = []
        for ob in s.obligations.values():
            if ob.state == PENDING:
                fire_after, exception_id = self._fire_after(s, ob)
                if now_us > fire_after:
                    due.append((ob.deadline_us, ob.finding_id, ob, exception_id))
        for _, _, ob, exception_id in sorted(due, key=lambda item: (item[0], item[1])):
            deadline_us = self._effective_deadline(s, ob)[0]
            self._fire(s, ob, now_us, deadline_us, exception_id, out)

    @staticmethod
    def _status_at(s: IdentityState, moment_us: int) -> str | None:
        """The identity's status just before `moment_us`, as far as the remembered changes go."""
        for since_us, status in reversed(s.transitions):
            if since_us < moment_us:
                return status
        return None

    def _forget_old(self, s: IdentityState, now_us: int) -> None:
        """Drop ended triggers and status changes older than the late-event horizon.

        Runs on status and device messages (the ones that end triggers), not on the far more
        frequent entitlement changes, so the hot path does not pay for it.
        """
        cutoff = now_us - self.horizon_us
        for key, trigger in list(s.triggers.items()):
            if trigger.ended_at_us is None or trigger.ended_at_us >= cutoff:
                continue
            if not self._obligations_of(s, key):
                for ob in self._settled_of(s, key):
                    del s.settled[ob.finding_id]
                del s.triggers[key]
        transitions = s.transitions
        while len(transitions) > 1 and transitions[1][0] < cutoff:
            del transitions[0]

    # -- offboarding evidence ----------------------------------------------------------------

    def _awaiting_evidence(self, s: IdentityState) -> list[TriggerState]:
        """Leaver triggers in force whose obligations are all met and not yet evidenced."""
        return [
            trigger
            for key, trigger in s.triggers.items()
            if trigger.trigger == "leaver"
            and not trigger.evidence_sent
            and trigger.ended_at_us is None
            and not self._obligations_of(s, key)
        ]

    def _emit_evidence(self, s: IdentityState, now_us: int, out: _Out) -> None:
        """Evidence waits until the clock passes termination + grace, so that grants arriving
        late from other streams are in it rather than in a second record."""
        for trigger in self._awaiting_evidence(s):
            if now_us > trigger.at_us + self.grace_us:
                trigger.evidence_sent = True
                key = _trigger_key(trigger)
                out.records.append(self._offboarding_record(s, trigger, self._settled_of(s, key)))

    @staticmethod
    def _offboarding_record(
        s: IdentityState, trigger: TriggerState, obligations: list[Obligation]
    ) -> OffboardingRecord:
        entries = []
        for ob in sorted(obligations, key=lambda o: (o.system or "", o.entitlement or "")):
            assert ob.met_at_us is not None
            assert ob.system is not None
            assert ob.entitlement is not None
            assert ob.entitlement_kind is not None
            entries.append(
                RevokedEntitlement(
                    system=ob.system,
                    entitlement=ob.entitlement,
                    entitlement_kind=ob.entitlement_kind,
                    privileged=ob.privileged,
                    deadline=format_us(ob.deadline_us),
                    revoked_at=format_us(ob.met_at_us),
                    within_window=not ob.opened,
                    finding_id=ob.finding_id if ob.opened else None,
                )
            )
        completed_us = max(
            (ob.met_at_us for ob in obligations if ob.met_at_us is not None),
            default=trigger.at_us,
        )
        return OffboardingRecord(
            offboarding_id=stable_id(s.identity_id, "offboarding", trigger.event_id),
            identity_id=s.identity_id,
            identity_kind=s.identity_kind,
            terminated_at=format_us(trigger.at_us),
            trigger_event_id=trigger.event_id,
            completed_at=format_us(completed_us),
            all_within_window=all(entry.within_window for entry in entries),
            entitlements=tuple(entries),
        )
