"""One contract for every record sink, run against each implementation, plus what each adds."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import msgspec
import pytest

from accessdrift.alerts.sinks import DiscardSink, JsonLinesSink, RecordSink, TextSink
from accessdrift.models.clock import parse_us
from accessdrift.models.findings import FindingRecord, OffboardingRecord, Record

FINDING = FindingRecord(
    finding_id="f1",
    kind="access_not_revoked",
    trigger="leaver",
    status="open",
    identity_id="alice",
    identity_kind="human",
    system="github",
    entitlement="org-admin",
    entitlement_kind="role",
    device_id=None,
    severity="critical",
    triggered_at_us=parse_us("2026-01-05T09:00:00Z"),
    deadline_us=parse_us("2026-01-05T10:00:00Z"),
    detected_at_us=parse_us("2026-01-05T10:00:01Z"),
    resolved_at_us=None,
    trigger_event_id="s2",
    exception_id=None,
    summary="alice still holds it.",
)
EVIDENCE = OffboardingRecord(
    offboarding_id="o1",
    identity_id="alice",
    identity_kind="human",
    terminated_at_us=parse_us("2026-01-05T09:00:00Z"),
    trigger_event_id="s2",
    completed_at_us=parse_us("2026-01-05T09:00:00Z"),
    all_within_window=True,
    entitlements=(),
)


def _json_lines() -> tuple[RecordSink, Callable[[], list[dict[str, object]]]]:
    buffer = io.BytesIO()
    return JsonLinesSink(buffer), lambda: [json.loads(x) for x in buffer.getvalue().splitlines()]


def _text() -> tuple[RecordSink, Callable[[], list[dict[str, object]]]]:
    buffer = io.StringIO()

    def read() -> list[dict[str, object]]:
        kinds = {"OPEN": "finding", "RESOLVED": "finding", "EVIDENCE": "offboarding"}
        return [{"record_type": kinds[line.split()[1]]} for line in buffer.getvalue().splitlines()]

    return TextSink(buffer), read


def _discard() -> tuple[RecordSink, Callable[[], list[dict[str, object]]]]:
    return DiscardSink(), list


#: Each factory returns a sink, a reader of what reached its destination, and whether the sink
#: delivers at all.
SINKS = {"json_lines": (_json_lines, True), "text": (_text, True), "discard": (_discard, False)}


@pytest.fixture(params=sorted(SINKS))
def sink_under_test(
    request: pytest.FixtureRequest,
) -> tuple[RecordSink, Callable[[], list[dict[str, object]]], bool]:
    factory, delivers = SINKS[request.param]
    sink, read = factory()
    return sink, read, delivers


def test_contract_every_record_type_is_accepted_and_delivered_in_order(
    sink_under_test: tuple[RecordSink, Callable[[], list[dict[str, object]]], bool],
) -> None:
    sink, read, delivers = sink_under_test
    records: list[Record] = [FINDING, EVIDENCE, FINDING]
    for record in records:
        sink.emit(record)
    sink.flush()

    delivered = read()
    expected = ["finding", "offboarding", "finding"] if delivers else []
    assert [d["record_type"] for d in delivered] == expected


def test_contract_flush_with_nothing_emitted_is_harmless(
    sink_under_test: tuple[RecordSink, Callable[[], list[dict[str, object]]], bool],
) -> None:
    sink, read, _ = sink_under_test
    sink.flush()
    sink.flush()

    assert read() == []


def test_json_lines_writes_one_compact_line_per_record() -> None:
    buffer = io.BytesIO()
    sink = JsonLinesSink(buffer)
    sink.emit(FINDING)
    sink.emit(EVIDENCE)

    lines = buffer.getvalue().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) == 3
    assert lines[0].startswith(b'{"record_type":"finding","finding_id":"f1",')
    assert json.loads(lines[1])["entitlements"] == []


def test_text_puts_time_status_severity_and_id_before_the_summary() -> None:
    buffer = io.StringIO()
    sink = TextSink(buffer)
    sink.emit(FINDING)
    sink.emit(EVIDENCE)

    finding_line, evidence_line = buffer.getvalue().splitlines()
    assert finding_line == ("2026-01-05T10:00:01Z  OPEN      critical  [f1]  alice still holds it.")
    assert evidence_line.startswith("2026-01-05T09:00:00Z  EVIDENCE")
    assert "Offboarding of alice (terminated 2026-01-05T09:00:00Z) is complete" in evidence_line


def test_text_cannot_be_forged_or_drive_the_terminal_from_input() -> None:
    forged = "mallory\n2026-01-05T10:00:01Z  RESOLVED  critical  [f1]  all good\x1b[2J\u202e"
    buffer = io.StringIO()
    sink = TextSink(buffer)
    sink.emit(msgspec.structs.replace(FINDING, summary=f"{forged} still holds it."))
    sink.emit(msgspec.structs.replace(EVIDENCE, identity_id=forged))

    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert "\x1b" not in buffer.getvalue()
    assert "\u202e" not in buffer.getvalue()
    assert "mallory\\x0a2026-01-05T10:00:01Z  RESOLVED" in lines[0]
    assert "\\x1b[2J\\u202e" in lines[1]
