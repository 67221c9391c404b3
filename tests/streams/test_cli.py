"""`accessdrift replay` as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import os
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
    # The scenarios' histories lie months apart: allow the gaps between them.
    args = ("--until", "2026-06-01T00:00:00Z", "--max-ahead", "31536000", str(every_golden_input))
    first = replay(*args)
    second = replay(*args)

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
        (["missing.jsonl"], "cannot read missing.jsonl: No such file or directory"),
        (["/"], "cannot read /: Is a directory"),
        (["--grace", "1e303", "x"], "longer than the limit"),
        (["--grace", "nan", "x"], "seconds must be 0 or more"),
        (["--until", "tomorrow", "x"], "invalid time 'tomorrow'"),
        (["--until", "2026-01-05T09:00:00", "x"], "has no UTC offset"),
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


# -- event time: several inputs, one merged timeline --------------------------------------------

DEMO = Path(__file__).parents[2] / "deploy" / "demo" / "events.jsonl"


def _finding_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_demo_split_into_one_file_per_stream_gives_the_findings_of_the_merged_file(
    tmp_path: Path,
) -> None:
    lines = DEMO.read_text().splitlines()
    ordered = sorted(lines, key=lambda line: json.loads(line)["value"]["occurred_at"])
    (tmp_path / "merged.jsonl").write_text("\n".join(ordered) + "\n")
    parts = []
    for stream in ("identity.status", "device.posture", "entitlement.change", "access.exception"):
        part = tmp_path / f"{stream}.jsonl"
        part.write_text("".join(f"{x}\n" for x in lines if json.loads(x)["topic"] == stream))
        parts.append(str(part))

    merged = _finding_lines(replay(str(tmp_path / "merged.jsonl")))
    split = _finding_lines(replay(*parts))
    reversed_order = _finding_lines(replay(*reversed(parts)))

    assert len(merged) == 11
    assert sum(json.loads(x)["status"] == "open" for x in merged) == 6
    assert split == merged
    assert reversed_order == merged


def test_files_a_little_out_of_order_are_merged_within_the_lateness_bound(tmp_path: Path) -> None:
    shuffled = tmp_path / "shuffled.jsonl"
    # Alice's revoke written before her termination, ten minutes earlier in the file.
    shuffled.write_text("\n".join([ALICE[0], ALICE[1], ALICE[3], ALICE[2]]) + "\n")
    in_order = tmp_path / "in-order.jsonl"
    in_order.write_text("\n".join(ALICE) + "\n")

    assert replay("--lateness", "3600", str(shuffled)).stdout == replay(str(in_order)).stdout
    late = replay("--lateness", "0", str(shuffled))
    assert "1 later than the lateness bound" in late.stderr


def test_a_stray_timestamp_far_in_the_future_is_rejected_and_cannot_move_the_clock(
    tmp_path: Path,
) -> None:
    lines = DEMO.read_text().splitlines()
    typo = json.loads(lines[20])
    typo["value"]["occurred_at"] = typo["value"]["occurred_at"].replace("2026", "2126", 1)
    typo["value"]["event_id"] = "typo"
    with_typo = tmp_path / "typo.jsonl"
    with_typo.write_text("\n".join([*lines[:21], json.dumps(typo), *lines[21:]]) + "\n")

    clean = replay(str(DEMO))
    result = replay(str(with_typo))

    assert result.returncode == 1
    (error,) = [x for x in result.stderr.splitlines() if not x.startswith("replay:")]
    assert error.startswith(f"{with_typo}:22: value.occurred_at: 2126-")
    assert "--max-ahead" in error
    assert result.stdout == clean.stdout


def test_events_at_the_same_time_apply_in_line_order_not_by_event_id(tmp_path: Path) -> None:
    path = tmp_path / "same-second.jsonl"
    path.write_text(
        "\n".join(
            [
                ALICE[1],
                '{"topic":"identity.status","value":{"event_id":"e9","occurred_at":'
                '"2026-01-06T09:00:00Z","identity_id":"alice","status":"active"}}',
                '{"topic":"identity.status","value":{"event_id":"e10","occurred_at":'
                '"2026-01-06T09:00:00Z","identity_id":"alice","status":"terminated"}}',
            ]
        )
        + "\n"
    )

    records = [
        json.loads(x)
        for x in replay("--until", "2026-01-08T00:00:00Z", str(path)).stdout.splitlines()
    ]

    assert [(r["trigger"], r["status"], r["trigger_event_id"]) for r in records] == [
        ("leaver", "open", "e10")
    ]


# -- hostile and careless input -------------------------------------------------------------------


def test_standard_input_by_name_and_a_pipe_are_inputs_too(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat > {fifo}"], stdin=subprocess.PIPE)
    assert writer.stdin is not None
    writer.stdin.write(("\n".join(ALICE[:3]) + "\n").encode())
    writer.stdin.close()

    from_pipe = replay("--until", "2026-01-08T00:00:00Z", str(fifo))
    writer.wait(timeout=30)
    from_stdin = replay("--until", "2026-01-08T00:00:00Z", "/dev/stdin", stdin="\n".join(ALICE[:3]))

    assert from_pipe.returncode == from_stdin.returncode == 0, from_pipe.stderr
    assert from_pipe.stdout == from_stdin.stdout
    assert '"trigger":"leaver"' in from_pipe.stdout


def test_a_reader_that_stops_early_ends_the_replay_quietly(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(
            f'{{"topic":"entitlement.change","value":{{"event_id":"g{i}","occurred_at":'
            f'"2026-01-05T09:00:00Z","identity_id":"u{i}","system":"s","entitlement":"e",'
            f'"action":"granted"}}}}\n'
            f'{{"topic":"identity.status","value":{{"event_id":"t{i}","occurred_at":'
            f'"2026-01-05T10:00:00Z","identity_id":"u{i}","status":"terminated"}}}}\n'
            for i in range(3000)
        )
    )
    result = subprocess.run(
        f"{ACCESSDRIFT} replay --until 2026-01-09T00:00:00Z {path} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        executable="/bin/bash",
    )

    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"0001-01-01T00:00:00+14:00"', "timestamp out of range"),
        ('"9999-12-31T23:59:59-14:00"', "timestamp out of range"),
        ('"20260101"', "expected an RFC 3339 timestamp"),
        ("1767603600", "expected an RFC 3339 timestamp"),
    ],
)
def test_timestamps_that_overflow_or_are_bare_numbers_are_rejected_lines(
    tmp_path: Path, value: str, message: str
) -> None:
    path = tmp_path / "bad-time.jsonl"
    path.write_text(
        f'{{"topic":"identity.status","value":{{"event_id":"x","occurred_at":{value},'
        '"identity_id":"a","status":"terminated"}}\n'
    )

    result = replay("--until", "2026-01-08T00:00:00Z", str(path))

    assert result.returncode == 1
    assert f"{path}:1: value.occurred_at: {message}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_key_given_twice_is_rejected_rather_than_the_last_one_winning(tmp_path: Path) -> None:
    path = tmp_path / "twice.jsonl"
    path.write_text(
        '{"topic":"identity.status","value":{"event_id":"x","occurred_at":"2026-01-05T09:00:00Z",'
        '"identity_id":"a","status":"terminated","status":"active"}}\n'
    )

    result = replay(str(path))

    assert result.returncode == 1
    assert f"{path}:1: 'status' is given twice in one object" in result.stderr


def test_a_byte_order_mark_on_the_first_line_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(ALICE[:3]) + "\n").encode())

    result = replay("--until", "2026-01-08T00:00:00Z", str(path))

    assert result.returncode == 0, result.stderr
    assert '"trigger":"leaver"' in result.stdout


def test_a_separator_inside_names_cannot_hide_a_privileged_grant(tmp_path: Path) -> None:
    path = tmp_path / "collide.jsonl"

    def grant(event_id: str, system: str, entitlement: str, privileged: str) -> str:
        return json.dumps(
            {
                "topic": "entitlement.change",
                "value": {
                    "event_id": event_id,
                    "occurred_at": f"2026-01-05T09:0{event_id[-1]}:00Z",
                    "identity_id": "alice",
                    "system": system,
                    "entitlement": entitlement,
                    "action": "granted",
                    "privileged": privileged == "yes",
                },
            }
        )

    path.write_text(
        "\n".join(
            [
                ALICE[0],
                grant("g1", "a\x1fb", "c", "yes"),
                grant("g2", "a", "b\x1fc", "no"),
                ALICE[2],
            ]
        )
        + "\n"
    )

    result = replay("--until", "2026-01-08T00:00:00Z", str(path))
    records = [json.loads(x) for x in result.stdout.splitlines()]

    assert sorted((r["system"], r["entitlement"], r["severity"]) for r in records) == [
        ("a", "b\x1fc", "high"),
        ("a\x1fb", "c", "critical"),
    ]


def test_text_output_and_errors_cannot_be_forged_by_ids_or_field_names(tmp_path: Path) -> None:
    forged = "mallory\n2026-01-06T09:00:00Z  RESOLVED  critical  [00000000]  all clear\x1b[2J"
    path = tmp_path / "forged.jsonl"
    path.write_text(
        json.dumps(
            {
                "topic": "identity.status",
                "value": {
                    "event_id": "s1",
                    "occurred_at": "2026-01-05T09:00:00Z",
                    "identity_id": forged,
                    "status": "active",
                },
            }
        )
        + "\n"
        + json.dumps(
            {
                "topic": "identity.status",
                "value": {
                    "event_id": "s2",
                    "occurred_at": "2026-01-05T09:00:00Z",
                    "identity_id": "x",
                    "status": "active",
                    "\x1b[31m\nfake: " + "y" * 5000: True,
                },
            }
        )
        + "\n"
    )

    result = replay("--format", "text", "--until", "2026-01-08T00:00:00Z", str(path))

    (line,) = result.stdout.splitlines()
    assert "OPEN" in line
    assert "RESOLVED" not in line.split("]", 1)[0]
    assert "mallory\\x0a2026-01-06T09:00:00Z  RESOLVED" in line
    assert "\x1b" not in result.stdout + result.stderr
    (error,) = [x for x in result.stderr.splitlines() if not x.startswith("replay:")]
    assert "\\x1b[31m\\x0afake: yyy" in error
    assert len(error) < 300


def test_json_output_escapes_characters_that_split_lines(tmp_path: Path) -> None:
    path = tmp_path / "separators.jsonl"
    path.write_text(ALICE[0].replace('"alice"', '"al\\u2028i\\u0085ce"') + "\n")

    result = subprocess.run(
        [ACCESSDRIFT, "replay", "--until", "2026-01-08T00:00:00Z", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0
    assert b"\xe2\x80\xa8" not in result.stdout
    assert b"\xc2\x85" not in result.stdout
    (line,) = result.stdout.split(b"\n")[:-1]
    assert json.loads(line)["identity_id"] == "al\u2028i\u0085ce"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "long.toml",
            '[leaver]\nwindow = "3000000d"\n',
            "leaver.window: duration '3000000d' is longer",
        ),
        ("binary.toml", b"\xff\xfe[leaver]", "not UTF-8 text"),
        (
            "bomb.yaml",
            "x:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
            + "".join(
                f"  {n}: &{n} [{', '.join(['*' + p] * 9)}]\n"
                for p, n in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "leaver: {window: *i}\n",
            "anchors and aliases are not allowed",
        ),
    ],
)
def test_a_hostile_or_broken_policy_file_is_a_usage_error(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    policy = tmp_path / name
    if isinstance(content, bytes):
        policy.write_bytes(content)
    else:
        policy.write_text(content)

    result = replay("--policy", str(policy), str(DEMO))

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_policy_that_is_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = replay("--policy", str(tmp_path), str(DEMO))

    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_a_worker_replication_factor_below_one_is_refused_naming_it() -> None:
    result = subprocess.run(
        [ACCESSDRIFT, "worker", "--replication-factor", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "replication_factor" in result.stderr
