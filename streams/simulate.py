"""`accessdrift simulate`: an organisation and its history, with the ground truth.

A seeded, reproducible history of a company: humans with personal laptops and non-human
identities (service accounts, API keys, AI agents) each owned by a human, and shared kiosks;
systems with
privileged and ordinary roles, device-bound sessions, tokens and a VPN that needs a trusted
device. Over the first day everyone joins; a reconciliation burst then re-asserts every grant;
from the second day each identity may live one change: a leaver, a suspension, a mover, a lost
laptop, a laptop falling out of compliance, its owner leaving (for a non-human identity). A known
share of the access changes that must follow is injected as a failure: a revocation that never
lands, one that lands late, one that lands just inside the deadline, a time-boxed exception, a
grant to a departed identity.

The ground truth is derived from what was injected, not by running the engine: one line per
obligation a correct detector must track, with what it must make of it (`on_time`: no finding;
`late`: a finding that opens and resolves; `open`: a finding still open at the end), and one
line per offboarding that must be evidenced. `compare` checks a detector's records against it.

Events arrive with the lag of their source (HR up to 10 min, MDM 2 min, SaaS 5 min), so the
output is in arrival order, not event order, within the lateness replay tolerates (1 h). Each
identity's story is spread out by more than any lag, so the truth does not depend on arrival
order. The output is written through hourly buckets on disk, so its size is not bounded by
memory.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal

from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.findings import FindingRecord, OffboardingRecord, Record
from accessdrift.models.policy import Policy
from accessdrift.models.vocabulary import EntitlementKind, IdentityKind, Trigger

Expect = Literal["on_time", "late", "open"]
S: Final = US_PER_S
M: Final = 60 * S
H: Final = 3600 * S
D: Final = 24 * H
#: Most a source's events arrive after they happened.
LAG_US: Final[dict[str, int]] = {
    "identity.status": 10 * M,
    "device.posture": 2 * M,
    "entitlement.change": 5 * M,
    "access.exception": 1 * M,
}
PRIVILEGED: Final = (
    ("aws", "prod/AdministratorAccess"),
    ("github", "org/admin"),
    ("okta", "super-admin"),
    ("gcp", "roles/owner"),
)
ORDINARY: Final = (
    ("slack", "workspace"),
    ("jira", "project:CORE"),
    ("google", "drive"),
    ("salesforce", "sales-user"),
    ("zoom", "licensed"),
    ("confluence", "space:ENG"),
)
NHI_KINDS: Final[tuple[IdentityKind, ...]] = ("service_account", "api_key", "ai_agent")
ROLES: Final = ("engineer", "sales", "support", "finance", "designer", "manager")


@dataclass(frozen=True)
class SimulationSettings:
    identities: int = 1000
    seed: int = 1
    start_us: int = 1_767_571_200 * S  # 2026-01-05T00:00:00Z, a Monday
    #: Share of injected failures among the access changes that must follow a state change.
    failure_share: float = 0.2
    #: Share of non-human identities.
    nhi_share: float = 0.15

    @property
    def until_us(self) -> int:
        """A clock time past every deadline and landing of the history."""
        return self.start_us + 12 * D


@dataclass(frozen=True)
class Truth:
    """One obligation the detector must track, and what it must make of it."""

    trigger: Trigger
    identity_id: str
    system: str | None
    entitlement: str | None
    device_id: str | None
    deadline_us: int
    expect: Expect
    case: str

    def key(self) -> tuple[str, str, str | None, str | None]:
        return (self.trigger, self.identity_id, self.system, self.entitlement)

    def to_json(self) -> dict[str, Any]:
        return {
            "record_type": "obligation",
            "trigger": self.trigger,
            "identity_id": self.identity_id,
            "system": self.system,
            "entitlement": self.entitlement,
            "device_id": self.device_id,
            "deadline": format_us(self.deadline_us),
            "expect": self.expect,
            "case": self.case,
        }


@dataclass(frozen=True)
class EvidenceTruth:
    """An offboarding that must be evidenced (every entitlement revoked), and how."""

    identity_id: str
    all_within_window: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "record_type": "offboarding",
            "identity_id": self.identity_id,
            "all_within_window": self.all_within_window,
        }


@dataclass(frozen=True)
class _Grant:
    system: str
    entitlement: str
    kind: EntitlementKind = "role"
    privileged: bool = False
    device_id: str | None = None
    requires_trusted_device: bool = False


@dataclass
class _Identity:
    identity_id: str
    kind: IdentityKind
    joined_us: int
    role: str
    owner_id: str | None = None
    device_id: str | None = None
    grants: list[_Grant] = field(default_factory=list)
    #: When each grant was first granted.
    granted_us: dict[_Grant, int] = field(default_factory=dict)

    def grant(self, history: _History, grant: _Grant, at_us: int) -> None:
        self.grants.append(grant)
        self.granted_us[grant] = at_us
        history.change(self, grant, at_us, "granted")


class _History:
    """Events of the history (in buckets by arrival hour, on disk) and the truth."""

    def __init__(self, settings: SimulationSettings, directory: Path) -> None:
        self.settings = settings
        self.random = random.Random(settings.seed)
        self.truth: list[Truth] = []
        self.evidence: list[EvidenceTruth] = []
        self._directory = directory
        self._buckets: dict[int, IO[str]] = {}
        self._events = 0
        self.policy = Policy()

    # -- output -----------------------------------------------------------------------------

    def emit(self, stream: str, at_us: int, value: dict[str, Any]) -> None:
        self._events += 1
        arrival_us = at_us + self.random.randrange(LAG_US[stream] + 1)
        value = {"event_id": f"e{self._events}", "occurred_at": format_us(at_us), **value}
        hour = (arrival_us - self.settings.start_us) // H
        bucket = self._buckets.get(hour)
        if bucket is None:
            path = self._directory / f"{hour:08d}.jsonl"
            bucket = self._buckets[hour] = path.open("a", encoding="utf-8")
        bucket.write(f"{arrival_us} {json.dumps({'topic': stream, 'value': value})}\n")

    def lines(self) -> Iterator[str]:
        """The replay lines in arrival order (ties: in the order they were made)."""
        for bucket in self._buckets.values():
            bucket.close()
        for hour in sorted(self._buckets):
            path = self._directory / f"{hour:08d}.jsonl"
            entries = []
            with path.open(encoding="utf-8") as stream:
                for number, line in enumerate(stream):
                    at, _, rest = line.partition(" ")
                    entries.append((int(at), number, rest))
            path.unlink()
            entries.sort()
            for _, _, rest in entries:
                yield rest

    # -- the story --------------------------------------------------------------------------

    def chance(self, share: float) -> bool:
        return self.random.random() < share

    def status(self, who: _Identity, at_us: int, status: str, **extra: Any) -> None:
        value: dict[str, Any] = {"identity_id": who.identity_id, "status": status}
        if who.kind != "human":
            value["identity_kind"] = who.kind
            value["owner_id"] = extra.pop("owner_id", who.owner_id)
        value["role"] = extra.pop("role", who.role)
        self.emit("identity.status", at_us, value)

    def change(self, who: _Identity, grant: _Grant, at_us: int, action: str) -> None:
        value: dict[str, Any] = {
            "identity_id": who.identity_id,
            "system": grant.system,
            "entitlement": grant.entitlement,
            "action": action,
            "kind": grant.kind,
            "privileged": grant.privileged,
        }
        if grant.device_id is not None:
            value["device_id"] = grant.device_id
        if grant.requires_trusted_device:
            value["requires_trusted_device"] = True
        self.emit("entitlement.change", at_us, value)

    def posture(self, device_id: str, at_us: int, posture: str, identities: list[str]) -> None:
        self.emit(
            "device.posture",
            at_us,
            {"device_id": device_id, "posture": posture, "identity_ids": identities},
        )

    def landing(self, deadline_us: int, earliest_us: int) -> tuple[int | None, Expect, str]:
        """When an access change lands, drawn with the failure share: (time or None, expect,
        case)."""
        if not self.chance(self.settings.failure_share):
            span = max(1, deadline_us - earliest_us - 2 * S)
            return earliest_us + S + self.random.randrange(span), "on_time", "on_time"
        case = self.random.choice(("never", "late", "just_inside"))
        if case == "never":
            return None, "open", "never"
        if case == "late":
            return deadline_us + 10 * M + self.random.randrange(2 * H), "late", "late"
        return deadline_us - S, "on_time", "just_inside"

    def oblige(
        self,
        trigger: Trigger,
        who: _Identity,
        grant: _Grant | None,
        deadline_us: int,
        expect: Expect,
        case: str,
        device_id: str | None = None,
    ) -> None:
        self.truth.append(
            Truth(
                trigger,
                who.identity_id,
                None if grant is None else grant.system,
                None if grant is None else grant.entitlement,
                device_id,
                deadline_us,
                expect,
                case,
            )
        )


def _people(history: _History) -> list[_Identity]:
    settings, rnd = history.settings, history.random
    people: list[_Identity] = []
    for number in range(settings.identities):
        joined_us = settings.start_us + rnd.randrange(12 * H)
        if people and rnd.random() < settings.nhi_share:
            kind = rnd.choice(NHI_KINDS)
            owner = rnd.choice([p for p in people[-50:] if p.kind == "human"] or people[:1])
            people.append(
                _Identity(f"{kind.replace('_', '-')}-{number}", kind, joined_us, "automation",
                          owner_id=owner.identity_id)
            )  # fmt: skip
        else:
            people.append(_Identity(f"user-{number}", "human", joined_us, rnd.choice(ROLES)))
    return people


def _join(history: _History, who: _Identity, steady: bool) -> Expect | None:
    """Activation, a laptop (for a human), grants; a joiner obligation for a human."""
    rnd, policy = history.random, history.policy
    history.status(who, who.joined_us, "active")
    joiner: Expect | None = None
    granted_us = who.joined_us + H
    if who.kind == "human":
        deadline_us = who.joined_us + policy.joiner.window_s * S
        # Only identities that live no other change may miss the laptop: a leaver without one
        # would end the joiner obligation, which is another story.
        device_at, expect, case = history.landing(deadline_us, who.joined_us + 20 * M)
        if not steady and device_at is None:
            device_at, expect, case = who.joined_us + 2 * H, "on_time", "on_time"
        if not steady and expect == "late":
            device_at, expect, case = deadline_us - S, "on_time", "just_inside"
        history.oblige("joiner", who, None, deadline_us, expect, case)
        joiner = expect
        if device_at is not None:
            who.device_id = f"laptop-{who.identity_id}"
            history.posture(who.device_id, device_at, "compliant", [who.identity_id])
            session_us = max(granted_us, device_at + M)
            session = _Grant("okta", f"session:{who.device_id}", "session", False, who.device_id)
            who.grant(history, session, session_us)
            if rnd.random() < 0.5:
                who.grant(
                    history, _Grant("vpn", "corp-tunnel", "role", False, None, True), session_us
                )
    grants = [_Grant(*pair) for pair in rnd.sample(ORDINARY, rnd.randint(2, 5))]
    if rnd.random() < 0.3:
        grants += [
            _Grant(*pair, privileged=True) for pair in rnd.sample(PRIVILEGED, rnd.randint(1, 2))
        ]
    if rnd.random() < 0.3:
        grants.append(_Grant("github", f"pat:{who.identity_id}", "token"))
    for grant in grants:
        who.grant(history, grant, granted_us)
    return joiner


def _kiosks(history: _History, users: list[_Identity]) -> None:
    """Shared kiosks, each bound to a few identities with a session on it; some fall out of
    compliance on the second day. Their users keep a compliant laptop, so only the kiosk
    sessions are owed (a trusted-device grant is met by the laptop)."""
    rnd = history.random
    settings = history.settings
    for number in range(0, len(users) - 2, 5):
        group = users[number : number + 5]
        kiosk = f"kiosk-{number // 5}"
        ids = [who.identity_id for who in group]
        bound_us = settings.start_us + 13 * H
        history.posture(kiosk, bound_us, "compliant", ids)
        sessions = {}
        for who in group:
            session = _Grant("okta", f"session:{kiosk}", "session", False, kiosk)
            who.grant(history, session, bound_us + 10 * M)
            sessions[who.identity_id] = (who, session)
        if rnd.random() < 0.5:
            continue
        at_us = settings.start_us + 36 * H + rnd.randrange(24 * H)
        history.posture(kiosk, at_us, "noncompliant", ids)
        deadline_us = at_us + history.policy.device_untrusted.window_s("noncompliant") * S
        fixed_us, expect, case = history.landing(deadline_us, at_us + 10 * M)
        if fixed_us is not None:
            history.posture(kiosk, fixed_us, "compliant", ids)
        for who, session in sessions.values():
            if fixed_us is not None:
                history.oblige("device_untrusted", who, session, deadline_us, expect,
                               f"kiosk_compliant_again_{case}", kiosk)  # fmt: skip
                continue
            revoke_us, revoke_expect, revoke_case = history.landing(deadline_us, at_us + 2 * M)
            history.oblige("device_untrusted", who, session, deadline_us, revoke_expect,
                           f"kiosk_{revoke_case}", kiosk)  # fmt: skip
            if revoke_us is not None:
                history.change(who, session, revoke_us, "revoked")


def _reconcile(history: _History, people: list[_Identity]) -> None:
    """A nightly reconciliation re-asserts every current grant (which changes nothing)."""
    at_us = history.settings.start_us + 20 * H
    for who in people:
        for grant in who.grants:
            if who.granted_us[grant] < at_us:
                history.change(who, grant, at_us + history.random.randrange(30 * M), "granted")


def _leaver(history: _History, who: _Identity, at_us: int) -> None:
    policy = history.policy.leaver
    history.status(who, at_us, "terminated")
    late = False
    complete = True
    for grant in who.grants:
        window_s = policy.privileged_window_s if grant.privileged else policy.window_s
        deadline_us = at_us + window_s * S
        revoke_us: int | None
        expect: Expect
        if grant.privileged and history.chance(0.1):
            # A time-boxed exception for a handover: the revocation may land after the
            # deadline, as long as it lands before the exception expires.
            expires_us = deadline_us + 2 * H
            history.emit(
                "access.exception",
                at_us + 5 * M,
                {"exception_id": f"x-{who.identity_id}-{grant.system}",
                 "identity_id": who.identity_id, "system": grant.system,
                 "entitlement": grant.entitlement, "expires_at": format_us(expires_us),
                 "reason": "handover", "approved_by": "ciso"},
            )  # fmt: skip
            if history.chance(0.7):
                revoke_us, expect, case = deadline_us + H, "on_time", "exception_covers"
            else:
                revoke_us, expect, case = expires_us + 30 * M, "late", "exception_expired"
        else:
            revoke_us, expect, case = history.landing(deadline_us, at_us + 20 * M)
        history.oblige("leaver", who, grant, deadline_us, expect, case)
        if revoke_us is None:
            complete = False
        else:
            late = late or expect == "late"
            history.change(who, grant, revoke_us, "revoked")
    if complete and who.grants:
        history.evidence.append(EvidenceTruth(who.identity_id, not late))
    if history.chance(0.05):
        # Provisioning that missed the termination: a grant to a departed identity.
        stray = _Grant("zoom", "webinar-host")
        granted_us = at_us + 3 * H
        history.change(who, stray, granted_us, "granted")
        expect = "open"
        if history.chance(0.5):
            expect = "late"
            history.change(who, stray, granted_us + 4 * H, "revoked")
        history.oblige(
            "grant_while_inactive", who, stray, granted_us, expect, "provisioned_after_termination"
        )


def _suspension(history: _History, who: _Identity, at_us: int) -> None:
    history.status(who, at_us, "suspended")
    deadline_us = at_us + history.policy.suspension.window_s * S
    for grant in who.grants:
        if grant.kind in ("session", "token", "credential"):
            revoke_us, expect, case = history.landing(deadline_us, at_us + 5 * M)
            history.oblige("suspension", who, grant, deadline_us, expect, case)
            if revoke_us is not None:
                history.change(who, grant, revoke_us, "revoked")


def _mover(history: _History, who: _Identity, at_us: int) -> None:
    new_role = history.random.choice([r for r in ROLES if r != who.role])
    history.status(who, at_us, "active", role=new_role)
    deadline_us = at_us + history.policy.mover.window_s * S
    for grant in who.grants:
        if grant.privileged:
            land_us, expect, case = history.landing(deadline_us, at_us + H)
            history.oblige("mover", who, grant, deadline_us, expect, case)
            if land_us is not None:
                # Re-approved (granted again) or revoked: both meet it.
                action = "granted" if history.chance(0.3) else "revoked"
                history.change(who, grant, land_us, action)


def _device_untrusted(history: _History, who: _Identity, at_us: int, posture: str) -> None:
    """The laptop becomes `lost` (stays lost) or `noncompliant` (compliant again later)."""
    assert who.device_id is not None
    history.posture(who.device_id, at_us, posture, [who.identity_id])
    deadline_us = at_us + history.policy.device_untrusted.window_s(posture) * S
    affected = [g for g in who.grants if g.device_id == who.device_id or g.requires_trusted_device]
    if posture == "noncompliant":
        # Fixed (compliant again) ends every obligation at once; otherwise each is revoked.
        fixed_us, expect, case = history.landing(deadline_us, at_us + 10 * M)
        if fixed_us is not None:
            history.posture(who.device_id, fixed_us, "compliant", [who.identity_id])
            for grant in affected:
                history.oblige("device_untrusted", who, grant, deadline_us, expect,
                               f"compliant_again_{case}", who.device_id)  # fmt: skip
            return
    for grant in affected:
        revoke_us, expect, case = history.landing(deadline_us, at_us + 2 * M)
        history.oblige("device_untrusted", who, grant, deadline_us, expect, case, who.device_id)
        if revoke_us is not None:
            history.change(who, grant, revoke_us, "revoked")


def _owners_leaving(
    history: _History, people: list[_Identity], left: dict[str, int], life: dict[str, str]
) -> None:
    """Each non-human identity whose owner left must get a new active owner in time (one that
    lives no change, so it is active whenever the hand-over lands)."""
    steady = [p for p in people if p.kind == "human" and life[p.identity_id] == "none"]
    for who in people:
        if who.kind == "human" or who.owner_id not in left or not steady:
            continue
        at_us = left[who.owner_id]
        deadline_us = at_us + history.policy.owner_departed.window_s * S
        reowned_us, expect, case = history.landing(deadline_us, at_us + H)
        history.oblige("owner_departed", who, None, deadline_us, expect, case)
        if reowned_us is not None:
            new_owner = history.random.choice(steady)
            history.status(who, reowned_us, "active", owner_id=new_owner.identity_id)


def simulate(settings: SimulationSettings, directory: Path) -> tuple[Iterator[str], _History]:
    """The history's replay lines (in arrival order, made lazily) and its truth."""
    history = _History(settings, directory)
    rnd = history.random
    people = _people(history)
    life: dict[str, str] = {}
    for who in people:
        if who.kind == "human":
            life[who.identity_id] = rnd.choices(
                ("none", "leaver", "suspension", "mover", "lost", "noncompliant"),
                (40, 25, 8, 10, 8, 9),
            )[0]
        else:
            life[who.identity_id] = "none"
    owners = {p.owner_id for p in people if p.owner_id is not None}
    kiosk_users: list[_Identity] = []
    for who in people:
        # An owner of non-human identities lives no change but possibly leaving, so that its
        # identities' story is only about the owner leaving.
        if who.identity_id in owners and life[who.identity_id] not in ("none", "leaver"):
            life[who.identity_id] = "none"
        joiner = _join(history, who, steady=life[who.identity_id] == "none")
        if joiner == "on_time" and life[who.identity_id] == "none" and rnd.random() < 0.15:
            kiosk_users.append(who)
    _kiosks(history, kiosk_users)
    _reconcile(history, people)
    left: dict[str, int] = {}
    for who in people:
        at_us = settings.start_us + 36 * H + rnd.randrange(24 * H)
        event = life[who.identity_id]
        if event == "leaver":
            _leaver(history, who, at_us)
            left[who.identity_id] = at_us
        elif event == "suspension":
            _suspension(history, who, at_us)
        elif event == "mover":
            _mover(history, who, at_us)
        elif event in ("lost", "noncompliant") and who.device_id is not None:
            _device_untrusted(history, who, at_us, event)
    _owners_leaving(history, people, left, life)
    return history.lines(), history


def write_simulation(
    settings: SimulationSettings, events: IO[str], truth: IO[str] | None
) -> tuple[int, int]:
    """Write the replay lines to `events` and the truth (JSON lines) to `truth`; returns the
    numbers of events and of obligations."""
    with tempfile.TemporaryDirectory(prefix="accessdrift-simulate-") as scratch:
        lines, history = simulate(settings, Path(scratch))
        count = 0
        for line in lines:
            events.write(line)
            count += 1
    if truth is not None:
        for item in history.truth:
            truth.write(json.dumps(item.to_json()) + "\n")
        for evidence in history.evidence:
            truth.write(json.dumps(evidence.to_json()) + "\n")
    return count, len(history.truth)


# -- checking a detector against the truth -------------------------------------------------------


@dataclass
class Agreement:
    """How a detector's records compare with the truth (each list: keys that disagree)."""

    obligations: int = 0
    missed_open: list[tuple[Any, ...]] = field(default_factory=list)
    false_open: list[tuple[Any, ...]] = field(default_factory=list)
    missed_resolved: list[tuple[Any, ...]] = field(default_factory=list)
    false_resolved: list[tuple[Any, ...]] = field(default_factory=list)
    evidence_wrong: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not (
            self.missed_open
            or self.false_open
            or self.missed_resolved
            or self.false_resolved
            or self.evidence_wrong
        )

    def describe(self) -> str:
        parts = [f"{self.obligations} obligations"]
        for name in ("missed_open", "false_open", "missed_resolved", "false_resolved",
                     "evidence_wrong"):  # fmt: skip
            items = getattr(self, name)
            if items:
                parts.append(f"{len(items)} {name.replace('_', ' ')} (first: {items[0]})")
        return "agrees with the truth: " + ", ".join(parts) if self.agrees else "; ".join(parts)


def read_truth(lines: Iterable[str]) -> tuple[list[Truth], list[EvidenceTruth]]:
    truth, evidence = [], []
    for line in lines:
        data = json.loads(line)
        if data["record_type"] == "offboarding":
            evidence.append(EvidenceTruth(data["identity_id"], data["all_within_window"]))
        else:
            truth.append(
                Truth(data["trigger"], data["identity_id"], data["system"], data["entitlement"],
                      data["device_id"], 0, data["expect"], data["case"])
            )  # fmt: skip
    return truth, evidence


def compare(
    truth: list[Truth], evidence: list[EvidenceTruth], records: Iterable[Record]
) -> Agreement:
    """Whether the records are what the truth says a correct detector produces: a finding opened
    for every obligation expected late or open and for no other, resolved for exactly those
    expected late, and offboarding evidence exactly where expected."""
    opened: set[tuple[Any, ...]] = set()
    resolved: set[tuple[Any, ...]] = set()
    evidenced: dict[str, bool] = {}
    for record in records:
        if isinstance(record, FindingRecord):
            key = (record.trigger, record.identity_id, record.system, record.entitlement)
            (opened if record.status == "open" else resolved).add(key)
        elif isinstance(record, OffboardingRecord):
            evidenced[record.identity_id] = record.all_within_window
    want_open = {t.key() for t in truth if t.expect != "on_time"}
    want_resolved = {t.key() for t in truth if t.expect == "late"}
    want_evidence = {e.identity_id: e.all_within_window for e in evidence}
    return Agreement(
        obligations=len(truth),
        missed_open=sorted(want_open - opened, key=str),
        false_open=sorted(opened - want_open, key=str),
        missed_resolved=sorted(want_resolved - resolved, key=str),
        false_resolved=sorted(resolved - want_resolved, key=str),
        evidence_wrong=[
            (k, want_evidence.get(k), evidenced.get(k))
            for k in sorted(want_evidence.keys() | evidenced.keys())
            if want_evidence.get(k) != evidenced.get(k)
        ],
    )  # fmt: skip
