"""Golden scenarios: input lines with the findings and evidence they must produce.

Each file under tests/streams/golden holds a list of scenarios:

    - name: what the scenario shows
      policy: {leaver: {window: 2h}}     # optional overrides, as in a policy file
      grace: 0                           # optional, seconds
      until: 2026-01-08T00:00:00Z        # optional
      input:
        - identity.status: {event_id: s1, occurred_at: ..., identity_id: alice, status: active}
        - "a raw line, written as is"
      expect:                            # every finding record, in order
        - {status: open, trigger: leaver, identity_id: alice, ...}
      evidence:                          # optional: every offboarding record, in order
        - {identity_id: alice, all_within_window: true, entitlements: [[github, admin, ...]]}

An expected record lists the fields it pins; each must match the record exactly, and the number
and order of records must match too. The same files drive replay (here) and, later, the Kafka
runtime, so both are held to one expectation.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from accessdrift.models.clock import parse_us
from accessdrift.models.findings import FindingRecord, OffboardingRecord, Record, encode_record
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.replay import ReplaySummary, replay

GOLDEN_DIR = Path(__file__).parent / "streams" / "golden"
#: Fields every expected finding must pin, so that no expectation is vacuous.
REQUIRED_FINDING_FIELDS = frozenset({"status", "trigger", "identity_id"})


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: times stay the strings the contract carries."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Scenario:
    file: str
    name: str
    lines: list[str]
    expect: list[dict[str, Any]]
    evidence: list[dict[str, Any]] | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    grace_s: float = 0.0
    until: str | None = None

    @property
    def id(self) -> str:
        return f"{self.file}: {self.name}"


def _line(item: Any) -> str:
    if isinstance(item, str):
        return item
    ((topic, value),) = item.items()
    return json.dumps({"topic": topic, "value": value}, separators=(",", ":"))


def load_scenarios() -> list[Scenario]:
    scenarios = []
    for path in sorted(GOLDEN_DIR.glob("*.yaml")):
        for raw in yaml.load(path.read_text(), Loader=_Loader):
            scenarios.append(
                Scenario(
                    file=path.stem,
                    name=raw["name"],
                    lines=[_line(item) for item in raw["input"]],
                    expect=raw.get("expect") or [],
                    evidence=raw.get("evidence"),
                    policy=raw.get("policy") or {},
                    grace_s=float(raw.get("grace", 0)),
                    until=raw.get("until"),
                )
            )
    return scenarios


class ListSink:
    """Collects records in memory."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def emit(self, record: Record) -> None:
        self.records.append(record)

    def flush(self) -> None:
        return None


@dataclass
class Outcome:
    findings: list[FindingRecord]
    evidence: list[OffboardingRecord]
    errors: str
    summary: ReplaySummary


def run_scenario(scenario: Scenario) -> Outcome:
    findings, evidence, errors = ListSink(), ListSink(), io.StringIO()
    data = ("\n".join(scenario.lines) + "\n").encode()
    summary = replay(
        [(scenario.file, io.BytesIO(data))],
        Engine(Policy.model_validate(scenario.policy), grace_s=scenario.grace_s),
        findings,
        evidence,
        errors=errors,
        until_us=parse_us(scenario.until) if scenario.until else None,
    )
    return Outcome(
        [r for r in findings.records if isinstance(r, FindingRecord)],
        [r for r in evidence.records if isinstance(r, OffboardingRecord)],
        errors.getvalue(),
        summary,
    )


def project(record: FindingRecord | OffboardingRecord, fields: dict[str, Any]) -> dict[str, Any]:
    """The record's values, in its canonical JSON form, for the fields an expectation names
    (entitlements as lists)."""
    data = json.loads(encode_record(record))
    projected = {}
    for name in fields:
        value = data[name]
        if name == "entitlements":
            value = [
                [e["system"], e["entitlement"], e["revoked_at"], e["within_window"]] for e in value
            ]
        projected[name] = value
    return projected
