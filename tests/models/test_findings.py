"""Records: deterministic, collision-free ids; a fixed JSON shape; integer times kept; JSON that
no consumer can split."""

from __future__ import annotations

import json

from accessdrift.models.findings import (
    FindingRecord,
    OffboardingRecord,
    RevokedEntitlement,
    decode_record,
    encode_record,
    stable_id,
)

HOUR_US = 3_600_000_000
FIELDS = [
    "record_type",
    "finding_id",
    "kind",
    "trigger",
    "status",
    "identity_id",
    "identity_kind",
    "system",
    "entitlement",
    "entitlement_kind",
    "device_id",
    "severity",
    "triggered_at",
    "deadline",
    "detected_at",
    "resolved_at",
    "time_to_revoke_seconds",
    "trigger_event_id",
    "exception_id",
    "summary",
]


def finding(**overrides: object) -> FindingRecord:
    fields: dict[str, object] = {
        "finding_id": stable_id("alice", "leaver"),
        "kind": "access_not_revoked",
        "trigger": "leaver",
        "status": "open",
        "identity_id": "alice",
        "identity_kind": "human",
        "system": "github",
        "entitlement": "org-admin",
        "entitlement_kind": "role",
        "device_id": None,
        "severity": "critical",
        "triggered_at_us": 0,
        "deadline_us": HOUR_US,
        "detected_at_us": 2 * HOUR_US,
        "resolved_at_us": None,
        "trigger_event_id": "ev-1",
        "exception_id": None,
        "summary": "alice still holds it.",
    }
    fields.update(overrides)
    return FindingRecord(**fields)  # type: ignore[arg-type]


def test_ids_are_deterministic_and_tell_parts_apart() -> None:
    assert stable_id("a", "b") == stable_id("a", "b")
    assert stable_id("a", "b") != stable_id("ab", "")
    assert stable_id("a", None) != stable_id("a", "")
    assert len(stable_id("x")) == 32


def test_a_separator_inside_a_name_cannot_make_two_ids_equal() -> None:
    assert stable_id("alice", "a\x1fb", "c") != stable_id("alice", "a", "b\x1fc")
    assert stable_id("alice", "1:a", "b") != stable_id("alice", "1:", "ab")


def test_open_and_resolved_records_have_the_fixed_shape_and_round_trip() -> None:
    opened = finding()
    resolved = finding(status="resolved", resolved_at_us=3 * HOUR_US)

    for record in (opened, resolved):
        data = json.loads(encode_record(record))
        assert list(data) == FIELDS
        assert decode_record(encode_record(record)) == record
    data = json.loads(encode_record(resolved))
    assert (data["resolved_at"], data["time_to_revoke_seconds"]) == (
        "1970-01-01T03:00:00Z",
        10800.0,
    )
    assert json.loads(encode_record(opened))["resolved_at"] is None
    assert resolved.time_to_revoke_s == 10800.0


def test_offboarding_records_round_trip_with_integer_times() -> None:
    record = OffboardingRecord(
        offboarding_id="o1",
        identity_id="alice",
        identity_kind="human",
        terminated_at_us=HOUR_US,
        trigger_event_id="s2",
        completed_at_us=2 * HOUR_US,
        all_within_window=False,
        entitlements=(
            RevokedEntitlement(
                system="github",
                entitlement="admin",
                entitlement_kind="role",
                privileged=True,
                deadline_us=2 * HOUR_US,
                revoked_at_us=2 * HOUR_US + 1,
                within_window=False,
                finding_id="f1",
            ),
        ),
    )

    data = json.loads(encode_record(record))
    assert data["record_type"] == "offboarding"
    assert data["entitlements"][0]["revoked_at"] == "1970-01-01T02:00:00.000001Z"
    assert decode_record(encode_record(record)) == record


def test_line_separators_inside_values_are_escaped_in_json() -> None:
    record = finding(identity_id="a\u2028b\u2029c\u0085d", summary="x\u2028y")

    line = encode_record(record)

    assert b"\xe2\x80\xa8" not in line
    assert b"\xe2\x80\xa9" not in line
    assert b"\xc2\x85" not in line
    assert b"\\u2028" in line
    assert b"\\u0085" in line
    assert decode_record(line).identity_id == "a\u2028b\u2029c\u0085d"
    assert len(line.decode().splitlines()) == 1


def test_equal_records_encode_to_equal_bytes() -> None:
    assert encode_record(finding()) == encode_record(finding())
