"""The engine against a small, independent reference model, under repeats, reordering, clock
jumps and restarts.

The reference model sees the whole timeline at once, sorted by event time, and derives every
obligation's outcome by brute force. The engine sees the same events one at a time:

* `ReorderedDelivery`: each stream (status, and each entitlement) keeps its own order but streams
  interleave arbitrarily, events are repeated at random, and the clock stays before every deadline
  until the end. The engine must end with exactly the reference's findings.
* `InOrderDelivery`: events arrive in time order with repeats, the clock follows them, re-grants
  and approved exceptions are in play. Again the final findings must match exactly.
* `FaultyDelivery`: interleaved streams with repeats, a clock that jumps forward as far as the
  watermark allows and back, and restarts that deliver again everything since the last commit.
  10,000 examples under `make soak`.

All check at every step that a finding is published once per change of status, and all pass
the identity's state through its binary encoding between steps, as a changelog would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from accessdrift.models.findings import FindingRecord, Record
from accessdrift.models.messages import (
    EntitlementChange,
    ExceptionGrant,
    IdentityMessage,
    StatusChange,
)
from accessdrift.models.policy import Policy
from accessdrift.models.state import decode_identity_state, encode_state
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime

MINUTE_US = 60_000_000
BASE_US = 1_767_600_000 * 1_000_000
WINDOWS_MIN = {"leaver": 30, "leaver_privileged": 10, "suspension": 20, "mover": 40, "joiner": 25}
POLICY = Policy.model_validate(
    {
        "leaver": {"window": "30m", "privileged_window": "10m"},
        "suspension": {"window": "20m"},
        "mover": {"window": "40m"},
        "joiner": {"window": "25m"},
    }
)
#: name -> (system, entitlement, kind, privileged)
ENTITLEMENTS = {
    "admin": ("aws", "admin", "role", True),
    "session": ("okta", "session", "session", False),
    "wiki": ("wiki", "reader", "role", False),
}
IDENTITY = "u1"


@dataclass(frozen=True)
class Ev:
    """One timeline event, in minutes since BASE."""

    kind: str  # status | grant | revoke | exception
    t: int
    event_id: str
    status: str | None = None
    role: str | None = None
    entitlement: str | None = None
    exception_system: str | None = None
    expires: int | None = None

    def message(self) -> IdentityMessage:
        at_us = BASE_US + self.t * MINUTE_US
        if self.kind == "status":
            return StatusChange(
                IDENTITY, self.event_id, at_us, self.status, "human", self.role, None
            )  # type: ignore[arg-type]
        if self.kind == "exception":
            assert self.expires is not None
            return ExceptionGrant(
                IDENTITY,
                self.event_id,
                at_us,
                f"exc-{self.event_id}",
                self.exception_system,
                None,
                BASE_US + self.expires * MINUTE_US,
                "test",
                "tester",
            )
        system, name, kind, privileged = ENTITLEMENTS[self.entitlement or ""]
        action = "granted" if self.kind == "grant" else "revoked"
        return EntitlementChange(
            IDENTITY,
            self.event_id,
            at_us,
            system,
            name,
            action,
            kind,
            privileged,
            None,
            False,  # type: ignore[arg-type]
        )


Outcome = tuple[str, int | None]
Key = tuple[str, str, str | None, str | None]


def reference(events: list[Ev]) -> dict[Key, Outcome]:
    """Every finding the timeline must produce: key -> (final status, resolved_at minute)."""
    timeline = sorted({e.event_id: e for e in events}.values(), key=lambda e: e.t)
    statuses = [e for e in timeline if e.kind == "status"]
    waivers = [e for e in timeline if e.kind == "exception"]

    def first_status_after(t: int, wanted: set[str]) -> int | None:
        return next((e.t for e in statuses if e.t > t and e.status in wanted), None)

    def status_before(t: int) -> str | None:
        before = [e.status for e in statuses if e.t < t]
        return before[-1] if before else None

    def effective_deadline(system: str | None, deadline: int) -> int:
        covering = [
            w.expires
            for w in waivers
            if w.expires is not None
            and w.t <= deadline < w.expires
            and (w.exception_system is None or w.exception_system == system)
        ]
        return max([deadline, *covering])

    def judge(key: Key, deadline: int, landing: int | None, system: str | None) -> None:
        if landing is not None and landing <= effective_deadline(system, deadline):
            return
        outcomes[key] = ("resolved", landing) if landing is not None else ("open", None)

    def earliest(*times: int | None) -> int | None:
        present = [t for t in times if t is not None]
        return min(present) if present else None

    intervals = {}
    for name in ENTITLEMENTS:
        grants = [e for e in timeline if e.kind == "grant" and e.entitlement == name]
        revokes = [e for e in timeline if e.kind == "revoke" and e.entitlement == name]
        if grants:
            revoke = revokes[0].t if revokes else None
            regrants = [g.t for g in grants[1:] if revoke is None or g.t < revoke]
            intervals[name] = (grants[0], regrants, revoke)

    outcomes: dict[Key, Outcome] = {}
    previous_status: str | None = None
    previous_role: str | None = None
    for event in statuses:
        t, trigger = event.t, None
        if event.status == "terminated" and previous_status != "terminated":
            trigger, end = "leaver", first_status_after(t, {"active"})
        elif event.status == "suspended" and previous_status != "suspended":
            trigger, end = "suspension", first_status_after(t, {"active"})
        elif event.status == "active" and previous_status != "active":
            joiner_end = first_status_after(t, {"suspended", "terminated"})
            judge(
                ("joiner", event.event_id, None, None), t + WINDOWS_MIN["joiner"], joiner_end, None
            )
        elif (
            event.status == "active"
            and previous_role
            and event.role
            and previous_role != event.role
        ):
            trigger, end = "mover", first_status_after(t, {"terminated"})
        previous_status, previous_role = event.status, event.role
        if trigger is None:
            continue
        for name, (grant, regrants, revoke) in intervals.items():
            system, entitlement, kind, privileged = ENTITLEMENTS[name]
            held = grant.t <= t and (revoke is None or revoke > t)
            key = (trigger, event.event_id, system, entitlement)
            if trigger == "leaver" and held:
                window = WINDOWS_MIN["leaver_privileged" if privileged else "leaver"]
                judge(key, t + window, earliest(revoke, end), system)
            elif trigger == "suspension" and held and kind == "session":
                judge(key, t + WINDOWS_MIN["suspension"], earliest(revoke, end), system)
            elif trigger == "mover" and held and privileged and grant.t < t:
                changes = [x for x in [*regrants, revoke] if x is not None and x > t]
                judge(key, t + WINDOWS_MIN["mover"], earliest(*changes, end), system)

    for name, (grant, _, revoke) in intervals.items():
        system, entitlement, _, _ = ENTITLEMENTS[name]
        if status_before(grant.t) in ("suspended", "terminated"):
            key = ("grant_while_inactive", grant.event_id, system, entitlement)
            judge(key, grant.t, revoke, system)
    return outcomes


class _Delivery(RuleBasedStateMachine):
    """Builds a timeline, delivers it to the engine, and compares with the reference."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(POLICY)
        self.state = self.engine.new_state(IDENTITY)
        self.t = 0
        self.serial = 0
        self.events: list[Ev] = []
        self.delivered: list[Ev] = []
        self.records: list[FindingRecord] = []
        self.published: set[tuple[str, str]] = set()
        self.ent_events: dict[str, list[Ev]] = {name: [] for name in ENTITLEMENTS}

    def _new(self, gap: int, kind: str, **fields: str | int | None) -> Ev:
        """A new event `gap` minutes after the previous one (every event has its own minute)."""
        self.t += gap
        self.serial += 1
        if kind == "exception":
            fields["expires"] = self.t + int(fields.pop("duration") or 0)
        event = Ev(kind, self.t, f"e{self.serial}", **fields)  # type: ignore[arg-type]
        self.events.append(event)
        return event

    def now_us(self, event: Ev) -> int:
        raise NotImplementedError

    def deliver(self, event: Ev) -> None:
        self.delivered.append(event)
        self.apply(event)

    def apply(self, event: Ev) -> None:
        """Apply one event read from the input (delivered, or read again after a restart)."""
        now_us = self.now_us(event)
        step = self.engine.apply(self.state, event.message(), now_us)
        self.state = decode_identity_state(encode_state(step.state))
        self.records.extend(r for r in step.records if isinstance(r, FindingRecord))

    @invariant()
    def each_finding_published_once_per_status(self) -> None:
        for record in self.records[len(self.published) :]:
            key = (record.finding_id, record.status)
            assert key not in self.published, f"published twice: {key}"
            if record.status == "resolved":
                assert (record.finding_id, "open") in self.published
            self.published.add(key)

    def finish(self) -> None:
        far_us = BASE_US + (self.t + 10_000) * MINUTE_US
        step = self.engine.advance(self.state, far_us)
        self.records.extend(r for r in step.records if isinstance(r, FindingRecord))
        self.each_finding_published_once_per_status()
        final: dict[Key, Outcome] = {}
        for record in self.records:
            key = (record.trigger, record.trigger_event_id, record.system, record.entitlement)
            resolved = None
            if record.resolved_at_us is not None:
                resolved = (record.resolved_at_us - BASE_US) // MINUTE_US
            final[key] = (record.status, resolved)
        assert final == reference(self.events)


STATUS = st.sampled_from(["active", "suspended", "terminated"])
ROLE = st.sampled_from([None, "eng", "sales"])
ENTITLEMENT = st.sampled_from(sorted(ENTITLEMENTS))
GAP = st.integers(min_value=1, max_value=25)


class ReorderedDelivery(_Delivery):
    """Streams interleave arbitrarily and events repeat; the clock waits until the end."""

    def __init__(self) -> None:
        super().__init__()
        self.pending_status: list[Ev] = []
        self.pending_ent: dict[str, list[Ev]] = {name: [] for name in ENTITLEMENTS}

    def now_us(self, event: Ev) -> int:
        return BASE_US

    @rule(gap=GAP, status=STATUS, role=ROLE)
    def status_changes(self, gap: int, status: str, role: str | None) -> None:
        self.pending_status.append(self._new(gap, "status", status=status, role=role))

    @rule(gap=GAP, name=ENTITLEMENT)
    def grant(self, gap: int, name: str) -> None:
        if not self.ent_events[name]:
            event = self._new(gap, "grant", entitlement=name)
            self.ent_events[name].append(event)
            self.pending_ent[name].append(event)

    @rule(gap=GAP, name=ENTITLEMENT)
    def revoke(self, gap: int, name: str) -> None:
        if len(self.ent_events[name]) == 1:
            event = self._new(gap, "revoke", entitlement=name)
            self.ent_events[name].append(event)
            self.pending_ent[name].append(event)

    @precondition(lambda self: bool(self.pending_status))
    @rule()
    def deliver_status(self) -> None:
        self.deliver(self.pending_status.pop(0))

    @rule(name=ENTITLEMENT)
    def deliver_entitlement(self, name: str) -> None:
        if self.pending_ent[name]:
            self.deliver(self.pending_ent[name].pop(0))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        self.deliver(data.draw(st.sampled_from(self.delivered)))

    def teardown(self) -> None:
        for event in self.pending_status:
            self.deliver(event)
        for queue in self.pending_ent.values():
            for event in queue:
                self.deliver(event)
        self.finish()


class InOrderDelivery(_Delivery):
    """Events arrive in time order, with repeats; the clock follows them."""

    def now_us(self, event: Ev) -> int:
        return BASE_US + max(e.t for e in self.delivered) * MINUTE_US

    @rule(gap=GAP, status=STATUS, role=ROLE)
    def status_changes(self, gap: int, status: str, role: str | None) -> None:
        self.deliver(self._new(gap, "status", status=status, role=role))

    @rule(gap=GAP, name=ENTITLEMENT)
    def grant(self, gap: int, name: str) -> None:
        events = self.ent_events[name]
        if not events or events[-1].kind == "grant":
            event = self._new(gap, "grant", entitlement=name)
            events.append(event)
            self.deliver(event)

    @rule(gap=GAP, name=ENTITLEMENT)
    def revoke(self, gap: int, name: str) -> None:
        events = self.ent_events[name]
        if events and events[-1].kind == "grant":
            event = self._new(gap, "revoke", entitlement=name)
            events.append(event)
            self.deliver(event)

    @rule(
        gap=GAP,
        system=st.sampled_from([None, "aws", "okta"]),
        duration=st.integers(min_value=5, max_value=90),
    )
    def approve_exception(self, gap: int, system: str | None, duration: int) -> None:
        self.deliver(self._new(gap, "exception", exception_system=system, duration=duration))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        self.deliver(data.draw(st.sampled_from(self.delivered)))

    def teardown(self) -> None:
        self.finish()


class FaultyDelivery(ReorderedDelivery):
    """What a live worker sees under faults: streams interleave (each in its own order) with
    repeats; the clock moves on its own, forward in jumps as far as the watermark allows (never
    past an event not yet delivered, as `streams/watermarks.py` guarantees) and backward (a
    restored clock older than the engine's last call); and restarts, after which everything
    since the last commit is delivered again, in order, from the state last stored."""

    def __init__(self) -> None:
        super().__init__()
        self.clock_min = 0
        #: The furthest the clock has been: a restored older clock does not make the sources
        #: go back, since the watermark already passed there.
        self.clock_high = 0
        #: How many deliveries the last input-offset commit covers.
        self.committed = 0

    def now_us(self, event: Ev) -> int:
        return BASE_US + self.clock_min * MINUTE_US

    def _new(self, gap: int, kind: str, **fields: str | int | None) -> Ev:
        # A source's events come after what the watermark has passed (within the lateness
        # bound, which this engine-level model leaves to streams/watermarks.py), even after
        # the clock went back.
        self.t = max(self.t, self.clock_high)
        return super()._new(gap, kind, **fields)

    def _bound(self) -> int:
        """The furthest the watermark lets the clock go: before every undelivered event."""
        waiting = [e.t for e in self.pending_status]
        waiting += [e.t for queue in self.pending_ent.values() for e in queue]
        return min(waiting) - 1 if waiting else self.t + 200

    @rule(data=st.data())
    def clock_moves(self, data: st.DataObject) -> None:
        bound = self._bound()
        self.clock_min = data.draw(st.integers(min(self.clock_min - 30, bound), bound))
        self.clock_high = max(self.clock_high, self.clock_min)
        step = self.engine.advance(self.state, BASE_US + self.clock_min * MINUTE_US)
        self.state = decode_identity_state(encode_state(step.state))
        self.records.extend(r for r in step.records if isinstance(r, FindingRecord))

    @rule()
    def commit(self) -> None:
        self.committed = len(self.delivered)

    @rule()
    def restart(self) -> None:
        """A crash: the state is what was stored last (every step stores it before its input is
        committed) and everything delivered since the last commit is delivered again, in order.
        What was published stays published, so a second publication would show."""
        # Read again, not delivered anew: the input holds them once (appending them doubled
        # the tail at every restart, which made a run with many restarts take hours).
        for event in self.delivered[self.committed :]:
            self.apply(event)


SOAK = os.environ.get("ACCESSDRIFT_SOAK") == "1"
ReorderedDelivery.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
InOrderDelivery.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None
)
#: 10,000 under `make soak`.
FaultyDelivery.TestCase.settings = settings(
    max_examples=10_000 if SOAK else 300, stateful_step_count=50, deadline=None
)
TestReorderedDelivery = ReorderedDelivery.TestCase
TestInOrderDelivery = InOrderDelivery.TestCase
TestFaultyDelivery = FaultyDelivery.TestCase


# -- owners and their non-human identities --------------------------------------------------------

OWNER_WINDOW_MIN = 30
OWNER_POLICY = Policy.model_validate({"owner_departed": {"window": f"{OWNER_WINDOW_MIN}m"}})
OWNERS = ("alice", "bob")
NHI = "svc"


@dataclass(frozen=True)
class OwnerEv:
    """One event of the owner story: a status snapshot of an owner or of the service account."""

    identity: str
    t: int
    event_id: str
    status: str
    owner: str | None = None

    def message(self) -> StatusChange:
        kind = "service_account" if self.identity == NHI else "human"
        return StatusChange(
            self.identity,
            self.event_id,
            BASE_US + self.t * MINUTE_US,
            self.status,  # type: ignore[arg-type]
            kind,  # type: ignore[arg-type]
            None,
            self.owner,
        )


def owner_reference(events: list[OwnerEv]) -> dict[int, Outcome]:
    """Every owner_departed finding of the service account, by trigger minute: walk the timeline
    in order; a trigger opens when the account is active and its owner terminated, and is met as
    soon as the account is terminated or its owner active."""
    timeline = sorted({e.event_id: e for e in events}.values(), key=lambda e: e.t)
    status = dict.fromkeys(OWNERS, "active")
    nhi_status, nhi_owner = None, None
    trigger: int | None = None
    outcomes: dict[int, Outcome] = {}
    for event in timeline:
        if event.identity == NHI:
            nhi_status, nhi_owner = event.status, event.owner
        else:
            status[event.identity] = event.status
        owner_status = status[nhi_owner] if nhi_owner is not None else None
        if trigger is not None:
            if nhi_status == "terminated" or owner_status == "active":
                if event.t > trigger + OWNER_WINDOW_MIN:
                    outcomes[trigger] = ("resolved", event.t)
                trigger = None
        elif nhi_status == "active" and owner_status == "terminated":
            trigger = event.t
    if trigger is not None:
        outcomes[trigger] = ("open", None)
    return outcomes


class OwnerReassignment(RuleBasedStateMachine):
    """A service account owned by alice, perhaps handed to bob, while either leaves, comes back
    or is suspended; each identity's events keep their own order, but the three streams
    interleave arbitrarily and repeat (an HR feed lagging the IdP), with the clock held back
    until the end, as grace allows. The findings must be those of the events in time order."""

    def __init__(self) -> None:
        super().__init__()
        self.sink = _Collect()
        self.runtime = LocalRuntime(Engine(OWNER_POLICY), self.sink)
        self.t = 0
        self.serial = 0
        self.events: list[OwnerEv] = []
        self.pending: dict[str, list[OwnerEv]] = {who: [] for who in (*OWNERS, NHI)}
        self.delivered: list[OwnerEv] = []
        self.reassigned = False
        for who in OWNERS:
            self._new(who, "active")
        self._new(NHI, "active", "alice")

    def _new(self, identity: str, status: str, owner: str | None = None, gap: int = 1) -> None:
        self.t += gap
        self.serial += 1
        event = OwnerEv(identity, self.t, f"e{self.serial}", status, owner)
        self.events.append(event)
        self.pending[identity].append(event)

    def _deliver(self, event: OwnerEv) -> None:
        self.delivered.append(event)
        self.runtime.submit(event.message(), BASE_US)

    @rule(gap=GAP, who=st.sampled_from(OWNERS), status=STATUS)
    def owner_changes(self, gap: int, who: str, status: str) -> None:
        self._new(who, status, gap=gap)

    @rule(gap=GAP)
    def reassign_to_bob(self, gap: int) -> None:
        if not self.reassigned:
            self.reassigned = True
            self._new(NHI, "active", "bob", gap)

    @rule(gap=GAP, status=st.sampled_from(["active", "terminated"]))
    def account_changes(self, gap: int, status: str) -> None:
        self._new(NHI, status, "bob" if self.reassigned else "alice", gap)

    @rule(who=st.sampled_from((*OWNERS, NHI)))
    def deliver_next(self, who: str) -> None:
        if self.pending[who]:
            self._deliver(self.pending[who].pop(0))

    @precondition(lambda self: bool(self.delivered))
    @rule(data=st.data())
    def repeat(self, data: st.DataObject) -> None:
        self._deliver(data.draw(st.sampled_from(self.delivered)))

    def teardown(self) -> None:
        for queue in self.pending.values():
            while queue:
                self._deliver(queue.pop(0))
        self.runtime.advance(BASE_US + (self.t + 10_000) * MINUTE_US)
        final: dict[int, Outcome] = {}
        published: set[tuple[str, str]] = set()
        for record in self.sink.findings:
            assert record.identity_id == NHI
            assert record.trigger == "owner_departed"
            key = (record.finding_id, record.status)
            assert key not in published, f"published twice: {key}"
            published.add(key)
            resolved = None
            if record.resolved_at_us is not None:
                resolved = (record.resolved_at_us - BASE_US) // MINUTE_US
            final[(record.triggered_at_us - BASE_US) // MINUTE_US] = (record.status, resolved)
        assert final == owner_reference(self.events)


class _Collect:
    def __init__(self) -> None:
        self.findings: list[FindingRecord] = []

    def emit(self, record: Record) -> None:
        if isinstance(record, FindingRecord) and record.trigger == "owner_departed":
            self.findings.append(record)

    def flush(self) -> None:
        return None


OwnerReassignment.TestCase.settings = settings(
    max_examples=400, stateful_step_count=30, deadline=None
)
TestOwnerReassignment = OwnerReassignment.TestCase
