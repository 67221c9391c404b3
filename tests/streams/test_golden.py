"""Every golden scenario, replayed: the findings and evidence must match exactly, in order."""

from __future__ import annotations

from typing import get_args

import pytest

from accessdrift.models.findings import FindingRecord
from accessdrift.models.vocabulary import Trigger
from tests.scenarios import REQUIRED_FINDING_FIELDS, Scenario, load_scenarios, project, run_scenario

SCENARIOS = load_scenarios()


def _listing(findings: list[FindingRecord]) -> list[tuple[str | None, ...]]:
    return [(r.status, r.trigger, r.identity_id, r.system, r.entitlement) for r in findings]


def test_every_trigger_has_a_golden_file() -> None:
    files = {scenario.file for scenario in SCENARIOS}
    assert set(get_args(Trigger)) <= files


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_golden(scenario: Scenario) -> None:
    outcome = run_scenario(scenario)

    assert outcome.errors == ""
    for expected in scenario.expect:
        assert expected.keys() >= REQUIRED_FINDING_FIELDS, f"pins too little: {expected}"
    got = [
        project(record, expected)
        for record, expected in zip(outcome.findings, scenario.expect, strict=False)
    ]
    assert (got, len(outcome.findings)) == (scenario.expect, len(scenario.expect)), _listing(
        outcome.findings
    )
    if scenario.evidence is not None:
        got_evidence = [
            project(record, expected)
            for record, expected in zip(outcome.evidence, scenario.evidence, strict=False)
        ]
        assert (got_evidence, len(outcome.evidence)) == (
            scenario.evidence,
            len(scenario.evidence),
        )
