"""`accessdrift replay` as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scenarios import GOLDEN_DIR, load_scenarios

ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))
ALICE = [
    '{"topic":"identity.status","value":{"event_id":"s1","occurred_at":"2026-01-05T09:00:00Z",'
    '"identity_id":"alice","status":"active"}}',
    '{"topic":"entitlement.change","value":{"event_id":"g1","occurred_at":"2026-01-05T09:10:00Z",'
    '"identity_id":"alice","system":"github","entitlement":"org-admin","action":"granted",'
    '"privileged":true}}',
    '{"topic":"identity.status","value":{"event_id":"s2","occurred_at":"2026-01-06T09:00:00Z",'
    '"identity_id":"alice","status":"terminated"}}',
    '{"topic":"entitlement.change","value":{"event_id":"r1","occurred_at":"2026-01-06T09:30:00Z",'
    '"identity_id":"alice","system":"github","entitlement":"org-admin","action":"revoked"}}',
]


def replay(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCESSDRIFT, "replay", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def every_golden_input(tmp_path: Path) -> Path:
    path = tmp_path / "all.jsonl"
    lines = [line for scenario in load_scenarios() for line in scenario.lines]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_same_input_gives_byte_identical_output(every_golden_input: Path) -> None:
    first = replay("--until", "2026-02-01T00:00:00Z", str(every_golden_input))
    second = replay("--until", "2026-02-01T00:00:00Z", str(every_golden_input))

    assert first.returncode == 0, first.stderr
    assert first.stdout.count("\n") > 10
    assert first.stdout == second.stdout
    assert first.stderr == second.stderr


def test_findings_are_json_lines_and_the_summary_goes_to_stderr(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(ALICE[:3]) + "\n")

    result = replay("--until", "2026-01-08T00:00:00Z", str(path))

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0
    assert [(r["trigger"], r["status"]) for r in records] == [("leaver", "open")]
    assert "replay: 3 lines read, 0 rejected" in result.stderr
    assert "1 opened, 0 resolved, 1 still open" in result.stderr


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_still_runs(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    bad_time = ALICE[2].replace("09:00:00Z", "09:00:00")
    path.write_text(
        "\n".join(
            [
                ALICE[0],
                "this is not json",
                ALICE[1],
                '{"topic":"identity.state","value":{}}',
                bad_time,
                "",
                ALICE[2],
            ]
        )
        + "\n"
    )

    result = replay("--until", "2026-01-08T00:00:00Z", str(path))

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if not line.startswith("replay:")]
    assert errors == [
        f"{path}:2: not valid JSON (expected ident at line 1 column 2)",
        f"{path}:4: unknown stream 'identity.state' (expected one of: identity.status, "
        "device.posture, entitlement.change, access.exception)",
        f"{path}:5: value.occurred_at: timestamp has no UTC offset; write it as RFC 3339 with Z "
        "or +hh:mm",
    ]
    assert "6 lines read, 3 rejected" in result.stderr
    leaver = [json.loads(line) for line in result.stdout.splitlines()][-1]
    assert (leaver["trigger"], leaver["system"]) == ("leaver", "github")


def test_standard_input_and_evidence_file(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.jsonl"

    result = replay("--evidence", str(evidence), "-", stdin="\n".join(ALICE) + "\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    (record,) = [json.loads(line) for line in evidence.read_text().splitlines()]
    assert record["record_type"] == "offboarding"
    assert record["entitlements"][0]["revoked_at"] == "2026-01-06T09:30:00Z"
    assert record["all_within_window"] is True


def test_a_policy_file_changes_the_windows(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[leaver]\nprivileged_window = "10m"\n')
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(ALICE) + "\n")

    result = replay("--policy", str(policy), str(path))

    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["status"], r["deadline"]) for r in records] == [
        ("open", "2026-01-06T09:10:00Z"),
        ("resolved", "2026-01-06T09:10:00Z"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "no such input file: missing.jsonl"),
        (["--until", "tomorrow", "x"], "invalid time 'tomorrow'"),
        (["--until", "2026-01-05T09:00:00", "x"], "has no offset"),
        (["--grace", "-5", "x"], "seconds must be 0 or more"),
        ([], "the following arguments are required: FILE"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = replay(*args)

    assert result.returncode == 2
    assert message in result.stderr


def test_a_broken_policy_file_is_a_usage_error_naming_file_and_field(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[suspension]\nwindow = "soon"\n')

    result = replay("--policy", str(policy), str(GOLDEN_DIR / "leaver.yaml"))

    assert result.returncode == 2
    assert f"{policy}: suspension.window: invalid duration 'soon'" in result.stderr


def test_text_format_with_evidence_on_standard_output(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(ALICE) + "\n")

    result = replay("--format", "text", "--evidence", "-", str(path))

    assert result.returncode == 0
    (line,) = result.stdout.splitlines()
    assert line.startswith("2026-01-06T09:30:00Z  EVIDENCE")
    assert "Offboarding of alice" in line
