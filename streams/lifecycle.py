"""The life of an obligation, the same for every trigger: open, meet, settle, fire, resolve,
withdraw, and exceptions that defer it.

An obligation is one access change that must land by its deadline. It is judged when the
engine's clock passes its deadline (deferred by any approved exception covering it) plus grace:

* met by then: done, silently (reported as `on_time`);
* not met: a finding opens; when what it asks for lands later, the finding resolves (`late`)
  once the clock reaches the landing: until then an earlier landing could still come from
  another stream, and a published resolve cannot be taken back;
* met, but after the deadline, and known before the clock got there (late data): the open
  record goes out when the clock passes, since the control still failed, and the resolved one
  with it (or once the clock reaches the landing).

What meets an obligation is a `Landing`. A final landing (a revoke, the trigger's reason going
away) settles an on-time obligation at once. A landing a late event could still disprove (a
device that turns out not to have been compliant then, an owner who turns out to have left
already) keeps the obligation pending until it is judged, and even a settled one can be revived
by such an event: it then fires as soon as the clock allows.

`Context` is one engine step's working set: the identity's state, the clock, and what the step
emits. The rules (`streams/rules/`) say what opens and what meets obligations; this module does
the rest, the same way for all of them.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accessdrift.models.clock import US_PER_S
from accessdrift.models.findings import (
    FindingRecord,
    ObligationEnded,
    OffboardingRecord,
    Record,
    RevokedEntitlement,
    stable_id,
)
from accessdrift.models.messages import IdentityMessage
from accessdrift.models.policy import Policy
from accessdrift.models.state import (
    NEVER_US,
    Admission,
    IdentityState,
    Obligation,
    TriggerState,
    compose_key,
    grant_key,
)
from accessdrift.models.vocabulary import (
    FINDING_KIND_OF,
    IdentityStatus,
    Outcome,
    Resolution,
    Trigger,
)

if TYPE_CHECKING:
    from accessdrift.streams.rules.base import Rule


@dataclass(frozen=True)
class Limits:
    """How much history one identity keeps for judging late events.

    Ended triggers, status changes and ended device trust are kept for `horizon_s` and at most
    `ended_triggers` / `transitions` / `trust_spans` of them, so that one identity's state, and
    the work of each step, stays bounded however long its history (an identity flapping
    thousands of times keeps the latest ones). Events later than that are judged on what is
    left.
    """

    horizon_s: int = 7 * 86_400
    ended_triggers: int = 64
    transitions: int = 64
    owner_timeline: int = 64
    trust_spans: int = 64


def _indexed(ob: Obligation, at_us: int) -> bool:
    """Whether a deadline-index entry at `at_us` is still `ob`'s: a pending obligation's time to
    be judged, or an open one's landing to resolve at (entries at `at_us` fall due once the
    clock passes it)."""
    if ob.state == "pending":
        return ob.fire_after_us == at_us
    return ob.state == "open" and ob.met_at_us is not None and ob.met_at_us - 1 == at_us


@dataclass(frozen=True)
class Landing:
    """What met an obligation, when, and whether a late event could still disprove it.

    `by` names the device or owner a disprovable landing relies on.
    """

    at_us: int
    resolution: Resolution
    final: bool = True
    by: str | None = None


def earliest(*landings: Landing | None) -> Landing | None:
    """The earliest of the landings given (None when there is none)."""
    best: Landing | None = None
    for landing in landings:
        if landing is not None and (best is None or landing.at_us < best.at_us):
            best = landing
    return best


def device_key(device_id: str) -> str:
    """The `in_force` key of a device_untrusted trigger."""
    return compose_key("device", device_id)


class Step:
    """What one engine step returns.

    `state`: the identity's new state. `admission`: what became of the message (`applied`, or a
    `repeat` or `stale` one that changed nothing; None when time passed with no message).
    `records`: findings and offboarding records, in the order they happened.
    `ended`: every obligation that reached its end. `messages`: messages for other identities, to
    deliver keyed by their `identity_id`. `wake_us`: the earliest time after which `advance`
    could emit something, or None.
    """

    __slots__ = ("admission", "ended", "messages", "records", "state", "wake_us")

    def __init__(
        self,
        state: IdentityState,
        admission: Admission | None,
        records: list[Record],
        ended: list[ObligationEnded],
        messages: list[IdentityMessage],
        wake_us: int | None,
    ) -> None:
        self.state = state
        self.admission = admission
        self.records = records
        self.ended = ended
        self.messages = messages
        self.wake_us = wake_us

    @property
    def applied(self) -> bool:
        """Whether the step's message changed anything."""
        return self.admission == "applied"


class Context:
    """One step: the identity's state, the clock, the policy, and what the step emits."""

    __slots__ = (
        "ended",
        "grace_us",
        "limits",
        "messages",
        "now_us",
        "policy",
        "records",
        "rules",
        "s",
    )

    def __init__(
        self,
        state: IdentityState,
        now_us: int,
        policy: Policy,
        grace_us: int,
        limits: Limits,
        rules: dict[Trigger, Rule],
    ) -> None:
        self.s = state
        self.now_us = now_us
        self.policy = policy
        self.grace_us = grace_us
        self.limits = limits
        self.rules = rules
        self.records: list[Record] = []
        self.ended: list[ObligationEnded] = []
        self.messages: list[IdentityMessage] = []

    def step(self, admission: Admission | None) -> Step:
        """Fire what is due at `now_us`, emit evidence that is due, and return the step."""
        s = self.s
        if s.deadlines:
            self.fire_due()
        if s.status == "terminated":
            self.emit_evidence()
        return Step(s, admission, self.records, self.ended, self.messages, self.wake_us())

    # -- facts the rules ask about -----------------------------------------------------------

    def status_at(self, moment_us: int) -> IdentityStatus | None:
        """The identity's status just before `moment_us`, as far as remembered changes go."""
        transitions = self.s.transitions
        if not transitions:
            return None
        if transitions[-1][0] < moment_us:  # the common case: after the latest change
            return transitions[-1][1]
        index = bisect_left(transitions, moment_us, key=lambda change: change[0])
        return transitions[index - 1][1] if index else None

    def trusted_since(self, exclude: str | None = None) -> tuple[int, str] | None:
        """Since when, and thanks to which device, the identity has had a bound compliant
        device (other than `exclude`): the earliest of those it has now."""
        heap, devices = self.s.trusted_heap, self.s.devices
        while heap:
            since_us, device_id = heap[0]
            view = devices.get(device_id)
            if view is not None and view.trusted and view.since_us == since_us:
                break
            heapq.heappop(heap)
        if not heap:
            return None
        if heap[0][1] != exclude:
            return heap[0]
        top = heapq.heappop(heap)
        try:
            return self.trusted_since(exclude)
        finally:
            heapq.heappush(heap, top)

    def trusted_after(self, moment_us: int) -> tuple[int, str] | None:
        """The earliest time at or after `moment_us` that the identity had a bound compliant
        device, and which device: one it has now, or one whose trust has ended since."""
        found = self.trusted_since()
        earliest = None if found is None else (max(found[0], moment_us), found[1])
        for since_us, until_us, device_id in self.s.trust_spans:
            if until_us > moment_us:
                at_us = max(since_us, moment_us)
                if earliest is None or at_us < earliest[0]:
                    earliest = (at_us, device_id)
        return earliest

    # -- triggers ----------------------------------------------------------------------------

    def open_trigger(self, trigger: TriggerState, about: str) -> str | None:
        """Put `trigger` in force as the one about `about` (a trigger name or device key) and let
        its rule open its obligations. Returns its key; None if it was opened before."""
        s = self.s
        key = stable_id(trigger.trigger, trigger.event_id, trigger.device_id, str(trigger.at_us))
        if key in s.triggers:
            return None
        s.triggers[key] = trigger
        s.in_force[about] = key
        rule = self.rules[trigger.trigger]
        if rule.per_grant:
            for grant in list(s.grants.values()):
                rule.oblige(self, key, trigger, grant)
        else:
            rule.oblige_identity(self, key, trigger)
        return key

    def in_force(self, about: str) -> tuple[str, TriggerState] | None:
        """The trigger in force about `about` (a trigger name or device key), if any."""
        key = self.s.in_force.get(about)
        return None if key is None else (key, self.s.triggers[key])

    def all_in_force(self, trigger: Trigger) -> list[tuple[str, str, TriggerState]]:
        """Every (about, key, trigger) in force of one kind (several leaver or mover triggers
        can be in force at once: each termination or role change is its own)."""
        s = self.s
        found = []
        for about, key in s.in_force.items():
            state = s.triggers[key]
            if state.trigger == trigger:
                found.append((about, key, state))
        return found

    def live_of(self, trigger: Trigger) -> list[tuple[TriggerState, Obligation]]:
        """Every live obligation of the remembered triggers of one kind, ended ones included (an
        ended trigger's obligation met late may yet turn out met earlier by a late event)."""
        s = self.s
        return [
            (state, s.obligations[finding_id])
            for state in s.triggers.values()
            if state.trigger == trigger
            for finding_id in list(state.live)
        ]

    def end_trigger(self, key: str, at_us: int, about: str) -> None:
        """The trigger's reason went away at `at_us`: it is no longer in force, and each of its
        live obligations is met then (its rule's `reassess` takes the end into account)."""
        s = self.s
        trigger = s.triggers[key]
        trigger.ended_at_us = at_us
        if s.in_force.get(about) == key:
            del s.in_force[about]
        s.ended.append(key)
        rule = self.rules[trigger.trigger]
        for finding_id in list(trigger.live):
            rule.reassess(self, s.obligations[finding_id], trigger)

    def restore_trigger(self, key: str, about: str) -> None:
        """A trigger marked ended turns out to be in force after all (a late event disproved
        what ended it)."""
        s = self.s
        s.triggers[key].ended_at_us = None
        s.in_force[about] = key
        if key in s.ended:
            s.ended.remove(key)

    def drop_trigger(self, key: str) -> None:
        """Forget a trigger whose premise turned out false and that published nothing (it may
        open again, the same, if a later event makes the premise true once more)."""
        s = self.s
        trigger = s.triggers.pop(key)
        for about, in_force in list(s.in_force.items()):
            if in_force == key:
                del s.in_force[about]
        if key in s.ended:
            s.ended.remove(key)
        for finding_id in trigger.settled:
            self.unrely(s.settled.pop(finding_id))

    # -- obligations -------------------------------------------------------------------------

    def add(self, ob: Obligation, trigger: TriggerState | None) -> bool:
        """Register a new obligation, unless one with its id exists (live or settled)."""
        s = self.s
        if ob.finding_id in s.obligations or ob.finding_id in s.settled:
            return False
        s.obligations[ob.finding_id] = ob
        if trigger is not None:
            trigger.live[ob.finding_id] = None
        if ob.system is not None:
            key = grant_key(ob.system, ob.entitlement or "")
            s.by_grant.setdefault(key, {})[ob.finding_id] = None
        if ob.trigger == "grant_while_inactive":
            s.inactive_grants[ob.finding_id] = None
        self.schedule(ob)
        return True

    def effective_deadline(self, ob: Obligation) -> tuple[int, str | None]:
        """The deadline after exceptions: the latest expiry of an exception covering it."""
        deadline_us, exception_id = ob.deadline_us, None
        for waiver in self.s.waivers.values():
            if (
                waiver.covers(ob.system, ob.entitlement, ob.deadline_us)
                and waiver.expires_at_us > deadline_us
            ):
                deadline_us, exception_id = waiver.expires_at_us, waiver.exception_id
        return deadline_us, exception_id

    def schedule(self, ob: Obligation) -> None:
        """(Re)compute when the clock must pass for `ob` to fire, and index it by that time.

        A grant to an inactive identity has no window: it fires as soon as the clock reaches the
        grant (plus grace), not only once the clock has passed it.
        """
        deadline_us, exception_id = self.effective_deadline(ob)
        fire_after_us = deadline_us + self.grace_us
        if ob.trigger == "grant_while_inactive" and exception_id is None:
            fire_after_us -= 1
        if fire_after_us != ob.fire_after_us:
            ob.fire_after_us = fire_after_us
            heapq.heappush(self.s.deadlines, (fire_after_us, ob.finding_id))

    def meet(self, ob: Obligation, landing: Landing) -> None:
        """What `ob` asks for landed: keep the earliest landing known, and settle or resolve."""
        if ob.state == "done":
            return
        if ob.met_at_us is not None and ob.met_at_us <= landing.at_us:
            return
        self.unrely(ob)
        ob.met_at_us, ob.resolution = landing.at_us, landing.resolution
        ob.final = landing.final
        if landing.by is not None and not landing.final:
            ob.met_by = landing.by
            self.s.relying.setdefault(landing.by, {})[ob.finding_id] = None
        if ob.state == "open":
            self._resolve_once_known(ob)
        elif landing.final and landing.at_us <= self.effective_deadline(ob)[0]:
            self._report(ob, "on_time", landing.at_us)
            self._done(ob)

    def unmeet(self, ob: Obligation) -> None:
        """A late event disproved `ob`'s landing: it is unmet again. A settled obligation is
        revived and fires as soon as the clock allows (now, when it is already past)."""
        s = self.s
        self.unrely(ob)
        ob.met_at_us = ob.resolution = None
        ob.final = False
        if ob.state != "done":
            return
        ob.state = "pending"
        del s.settled[ob.finding_id]
        s.obligations[ob.finding_id] = ob
        if ob.trigger_key is not None:
            trigger = s.triggers[ob.trigger_key]
            del trigger.settled[ob.finding_id]
            trigger.live[ob.finding_id] = None
        ob.fire_after_us = NEVER_US  # its index entry was used up when it was judged
        self.schedule(ob)

    def relying_on(self, by: str) -> list[Obligation]:
        """The obligations (live or settled) whose landing relies on device or owner `by`."""
        s = self.s
        found = []
        for finding_id in s.relying.get(by, ()):
            ob = s.obligations.get(finding_id) or s.settled.get(finding_id)
            if ob is not None:
                found.append(ob)
        return found

    def unrely(self, ob: Obligation) -> None:
        """`ob`'s landing no longer relies on a device or owner (it changed, or became final)."""
        if ob.met_by is None:
            return
        relying = self.s.relying
        on_it = relying.get(ob.met_by)
        if on_it is not None:
            on_it.pop(ob.finding_id, None)
            if not on_it:
                del relying[ob.met_by]
        ob.met_by = None

    def withdraw(self, ob: Obligation, resolution: Resolution) -> None:
        """`ob` was never owed: a late event showed its premise false at the trigger's time.

        A finding already published for it is resolved as of the trigger (time to revoke 0).
        """
        if ob.state == "open":
            ob.met_at_us, ob.resolution = ob.triggered_at_us, resolution
            self.records.append(self.finding(ob, resolution))
        self._report(ob, "withdrawn", ob.triggered_at_us, resolution)
        self.unrely(ob)
        self._forget(ob)

    def fire_due(self) -> None:
        """Judge every pending obligation whose time the clock has passed, earliest deadline
        first. One its rule cannot judge yet (a non-human identity waiting for its new owner's
        answer) waits in the index."""
        s, now_us = self.s, self.now_us
        heap = s.deadlines
        if not heap or heap[0][0] >= now_us:
            return
        # By finding id: an obligation withdrawn and opened again has two equal entries.
        due: dict[str, tuple[int, Obligation]] = {}
        waiting: list[tuple[int, str]] = []
        while heap and heap[0][0] < now_us:
            entry = heapq.heappop(heap)
            ob = s.obligations.get(entry[1])
            if ob is None or not _indexed(ob, entry[0]):
                continue
            if ob.state == "open":
                assert ob.met_at_us is not None
                due[ob.finding_id] = (ob.met_at_us, ob)
            elif self.rules[ob.trigger].can_judge(self, ob):
                due[ob.finding_id] = (ob.deadline_us, ob)
            else:
                waiting.append(entry)
        for entry in waiting:
            heapq.heappush(heap, entry)
        # In the order they happened: deadlines passing and landings resolving open findings.
        for _, ob in sorted(due.values(), key=lambda due: (due[0], due[1].finding_id)):
            if ob.state == "open":
                self._resolve(ob)
            else:
                self._fire(ob)

    def wake_us(self) -> int | None:
        """The earliest time after which the clock would make this identity emit something."""
        s = self.s
        heap = s.deadlines
        while heap:
            ob = s.obligations.get(heap[0][1])
            if ob is not None and _indexed(ob, heap[0][0]):
                break
            heapq.heappop(heap)
        earliest_us = heap[0][0] if heap else None
        for trigger in self._awaiting_evidence():
            ready_us = trigger.at_us + self.grace_us
            if earliest_us is None or ready_us < earliest_us:
                earliest_us = ready_us
        return earliest_us

    def _fire(self, ob: Obligation) -> None:
        deadline_us, exception_id = self.effective_deadline(ob)
        if ob.met_at_us is not None and ob.met_at_us <= deadline_us:
            self._report(ob, "on_time", ob.met_at_us)
            self._done(ob)
            return
        ob.state = "open"
        ob.opened = True
        ob.detected_at_us = self.now_us
        ob.exception_id = exception_id
        self.records.append(self.finding(ob))
        if exception_id is not None:
            self._report(ob, "exception_expired", deadline_us)
        if ob.met_at_us is not None:
            self._resolve_once_known(ob)

    def _resolve_once_known(self, ob: Obligation) -> None:
        """Resolve open `ob` once the clock has reached its landing. Before that an earlier
        landing can still arrive from another stream (the clock says every event before it has
        been read, no more), and the resolve must carry the earliest: once published it stays.
        Until then the obligation waits in the deadline index at its landing."""
        assert ob.met_at_us is not None
        if ob.met_at_us <= self.now_us:
            self._resolve(ob)
        else:
            heapq.heappush(self.s.deadlines, (ob.met_at_us - 1, ob.finding_id))

    def _resolve(self, ob: Obligation) -> None:
        assert ob.resolution is not None
        assert ob.met_at_us is not None
        self.records.append(self.finding(ob, ob.resolution))
        self._report(ob, "late", ob.met_at_us)
        self._done(ob)

    def _done(self, ob: Obligation) -> None:
        s = self.s
        ob.state = "done"
        self._forget(ob)
        if ob.trigger_key is not None:
            s.settled[ob.finding_id] = ob
            s.triggers[ob.trigger_key].settled[ob.finding_id] = None

    def _forget(self, ob: Obligation) -> None:
        """Take `ob` out of the live obligations and their indexes."""
        s = self.s
        del s.obligations[ob.finding_id]
        if ob.trigger_key is not None:
            s.triggers[ob.trigger_key].live.pop(ob.finding_id, None)
        if ob.system is not None:
            key = grant_key(ob.system, ob.entitlement or "")
            on_grant = s.by_grant[key]
            del on_grant[ob.finding_id]
            if not on_grant:
                del s.by_grant[key]
        s.inactive_grants.pop(ob.finding_id, None)

    def _report(
        self, ob: Obligation, outcome: Outcome, at_us: int, resolution: Resolution | None = None
    ) -> None:
        s = self.s
        met = outcome in ("on_time", "late")
        self.ended.append(
            ObligationEnded(
                finding_id=ob.finding_id,
                identity_id=s.identity_id,
                identity_kind=s.identity_kind,
                trigger=ob.trigger,
                system=ob.system,
                entitlement=ob.entitlement,
                entitlement_kind=ob.entitlement_kind,
                privileged=ob.privileged,
                severity=ob.severity,
                triggered_at_us=ob.triggered_at_us,
                deadline_us=ob.deadline_us,
                ended_at_us=at_us,
                outcome=outcome,
                resolution=resolution if resolution is not None else ob.resolution,
                exception_id=ob.exception_id,
                time_to_revoke_us=max(0, at_us - ob.triggered_at_us) if met else None,
            )
        )

    def finding(self, ob: Obligation, resolution: Resolution | None = None) -> FindingRecord:
        """The record for an obligation that is open (`resolution` None) or just resolved."""
        assert ob.detected_at_us is not None
        s = self.s
        rule = self.rules[ob.trigger]
        return FindingRecord(
            finding_id=ob.finding_id,
            kind=FINDING_KIND_OF[ob.trigger],
            trigger=ob.trigger,
            status="open" if resolution is None else "resolved",
            identity_id=s.identity_id,
            identity_kind=s.identity_kind,
            system=ob.system,
            entitlement=ob.entitlement,
            entitlement_kind=ob.entitlement_kind,
            device_id=ob.device_id,
            severity=ob.severity,
            triggered_at_us=ob.triggered_at_us,
            deadline_us=ob.deadline_us,
            detected_at_us=ob.detected_at_us,
            resolved_at_us=None if resolution is None else ob.met_at_us,
            trigger_event_id=ob.trigger_event_id,
            exception_id=ob.exception_id,
            summary=(
                rule.open_summary(ob, s)
                if resolution is None
                else rule.resolved_summary(ob, s, resolution)
            ),
        )

    # -- forgetting --------------------------------------------------------------------------

    def forget_old(self) -> None:
        """Drop the oldest ended triggers (with their settled obligations) beyond the late-event
        horizon or the count limit, and status changes beyond both.

        Runs on status and device messages (the ones that end triggers), not on the far more
        frequent entitlement changes, so the hot path does not pay for it.
        """
        s, limits = self.s, self.limits
        cutoff_us = self.now_us - limits.horizon_s * US_PER_S
        ended = s.ended
        while ended:
            trigger = s.triggers[ended[0]]
            assert trigger.ended_at_us is not None
            old = trigger.ended_at_us < cutoff_us or len(ended) > limits.ended_triggers
            if not old or trigger.live:
                break
            for finding_id in trigger.settled:
                self.unrely(s.settled.pop(finding_id))
            del s.triggers[ended.pop(0)]
        transitions = s.transitions
        while len(transitions) > 1 and (
            transitions[1][0] < cutoff_us or len(transitions) > limits.transitions
        ):
            del transitions[0]
        spans = s.trust_spans
        while spans and (spans[0][1] < cutoff_us or len(spans) > limits.trust_spans):
            del spans[0]

    # -- offboarding evidence ----------------------------------------------------------------

    def _awaiting_evidence(self) -> list[TriggerState]:
        """Leaver triggers in force whose obligations are all met and not yet evidenced."""
        if self.s.status != "terminated":
            return []
        return [
            trigger
            for _, _, trigger in self.all_in_force("leaver")
            if not trigger.evidence_sent and not trigger.live
        ]

    def emit_evidence(self) -> None:
        """Evidence waits until the clock passes termination + grace, so that grants arriving
        late from other streams are in it rather than in a second record."""
        for trigger in self._awaiting_evidence():
            if self.now_us > trigger.at_us + self.grace_us:
                self._evidence(trigger)

    def _evidence(self, trigger: TriggerState) -> None:
        trigger.evidence_sent = True
        s = self.s
        obligations = sorted(
            (s.settled[finding_id] for finding_id in trigger.settled),
            key=lambda ob: (ob.system or "", ob.entitlement or ""),
        )
        entries = []
        for ob in obligations:
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
                    deadline_us=ob.deadline_us,
                    revoked_at_us=ob.met_at_us,
                    within_window=not ob.opened,
                    finding_id=ob.finding_id if ob.opened else None,
                )
            )
        completed_us = max(
            (ob.met_at_us for ob in obligations if ob.met_at_us is not None),
            default=trigger.at_us,
        )
        self.records.append(
            OffboardingRecord(
                offboarding_id=stable_id(s.identity_id, "offboarding", trigger.event_id),
                identity_id=s.identity_id,
                identity_kind=s.identity_kind,
                terminated_at_us=trigger.at_us,
                trigger_event_id=trigger.event_id,
                completed_at_us=completed_us,
                all_within_window=all(entry.within_window for entry in entries),
                entitlements=tuple(entries),
            )
        )
