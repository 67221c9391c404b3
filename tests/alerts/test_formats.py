"""Formats against their published field rules: OCSF 1.1 required attributes and enumerations,
ECS field types, CEF escaping; and that input text can never break out of its field."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accessdrift.alerts.formats import (
    FORMATTERS,
    CefFormat,
    EcsFormat,
    JsonFormat,
    OcsfFormat,
    cef_header,
    cef_value,
    envelope,
)
from accessdrift.models.findings import decode_record
from tests.alerts.records import EVIDENCE, FINDING, finding, resolved

#: OCSF 1.1 enumerations used here: severity_id, Detection Finding activity_id and status_id.
OCSF_SEVERITY_IDS = {0, 1, 2, 3, 4, 5, 6, 99}
OCSF_ACTIVITY_IDS = {0, 1, 2, 3, 99}
OCSF_STATUS_IDS = {0, 1, 2, 3, 4, 99}
#: Required attributes of the OCSF base event and of Detection Finding (class 2004).
OCSF_REQUIRED = ("activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time")
OCSF_FINDING_REQUIRED = (*OCSF_REQUIRED, "finding_info", "type_uid")


def _ocsf(record: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(OcsfFormat().format(record))
    return result


def test_ocsf_an_open_finding_is_a_detection_finding_created() -> None:
    doc = _ocsf(FINDING)

    for name in OCSF_FINDING_REQUIRED:
        assert name in doc, name
    assert (doc["class_uid"], doc["category_uid"]) == (2004, 2)
    assert doc["activity_id"] == 1
    assert doc["activity_name"] == "Create"
    assert doc["type_uid"] == 2004 * 100 + 1
    assert doc["status_id"] == 1
    assert doc["status"] == "New"
    assert doc["severity_id"] == 5
    assert doc["severity"] == "Critical"
    assert doc["time"] == FINDING.detected_at_us // 1000, "epoch milliseconds"
    assert doc["finding_info"]["uid"] == FINDING.finding_id
    assert doc["finding_info"]["title"] == "Access not revoked after leaver"
    assert doc["metadata"]["product"] == {
        "name": "accessdrift",
        "vendor_name": "accessdrift",
        "version": doc["metadata"]["product"]["version"],
    }
    assert re.fullmatch(r"1\.\d+\.\d+", doc["metadata"]["version"])
    assert doc["evidences"][0]["user"] == {
        "uid": "alice",
        "name": "alice",
        "type_id": 1,
        "type": "User",
    }
    assert doc["resources"] == [
        {
            "uid": "github/org-admin",
            "name": "org-admin",
            "type": "role",
            "group": {"name": "github"},
        }
    ]
    assert "end_time" not in doc, "absent attributes are left out, not null"


def test_ocsf_a_resolved_finding_closes_it_and_a_non_human_identity_is_other() -> None:
    doc = _ocsf(resolved(finding(identity_kind="service_account", severity="medium")))

    assert doc["activity_id"] == 3
    assert doc["type_uid"] == 200403
    assert doc["status_id"] == 4
    assert doc["status"] == "Resolved"
    assert doc["severity_id"] == 3
    assert doc["time"] == doc["end_time"]
    assert doc["evidences"][0]["user"]["type_id"] == 99
    assert doc["unmapped"]["time_to_revoke_seconds"] == 7200.0


@pytest.mark.parametrize("record", [FINDING, resolved(FINDING), EVIDENCE], ids=str)
def test_ocsf_enumerations_are_in_range(record: Any) -> None:
    doc = _ocsf(record)

    for name in OCSF_REQUIRED:
        assert name in doc, name
    assert doc["severity_id"] in OCSF_SEVERITY_IDS
    assert doc["activity_id"] in OCSF_ACTIVITY_IDS
    assert doc["status_id"] in OCSF_STATUS_IDS
    assert doc["type_uid"] == doc["class_uid"] * 100 + doc["activity_id"]
    assert isinstance(doc["time"], int)


def test_ocsf_offboarding_evidence_is_a_compliance_finding() -> None:
    doc = _ocsf(EVIDENCE)

    assert (doc["class_uid"], doc["category_uid"]) == (2003, 2)
    assert doc["finding_info"]["uid"] == EVIDENCE.offboarding_id
    assert doc["compliance"]["status_id"] == 3
    assert doc["compliance"]["status"] == "Fail"
    assert doc["resources"][0]["data"]["within_window"] is False


def _ecs(record: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(EcsFormat().format(record))
    return result


def test_ecs_a_finding_is_an_iam_alert_with_typed_fields() -> None:
    doc = _ecs(resolved(FINDING))
    event = doc["event"]

    assert event["kind"] == "alert"
    assert event["category"] == ["iam"]
    assert isinstance(event["type"], list)
    assert set(event["type"]) <= {
        "admin",
        "change",
        "creation",
        "deletion",
        "group",
        "info",
        "user",
    }
    assert isinstance(event["severity"], int)
    assert event["duration"] == 7200 * 10**9, "nanoseconds"
    assert event["id"] == f"{FINDING.finding_id}.resolved"
    for name in ("@timestamp", "start", "created", "end"):
        value = doc[name] if name == "@timestamp" else event[name]
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert doc["rule"]["id"] == "leaver"
    assert doc["rule"]["ruleset"] == "accessdrift"
    assert doc["user"] == {"id": "alice", "name": "alice"}
    assert doc["labels"]["finding_id"] == FINDING.finding_id
    assert all(isinstance(v, str) for v in doc["labels"].values()), "labels are keywords"
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["ecs"]["version"])


def test_ecs_offboarding_evidence_is_an_iam_event() -> None:
    doc = _ecs(EVIDENCE)

    assert doc["event"]["kind"] == "event"
    assert doc["event"]["category"] == ["iam"]
    assert doc["event"]["outcome"] == "failure"
    assert all(isinstance(v, str) for v in doc["labels"].values())


# -- CEF -----------------------------------------------------------------------------------------


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """An independent CEF reader: the six header fields after `CEF:0`, and the extension."""
    assert line.startswith("CEF:0|")
    header: list[str] = []
    current, at = "", len("CEF:0|")
    while len(header) < 6:
        char = line[at]
        if char == "\\":
            current += line[at + 1]
            at += 2
        elif char == "|":
            header.append(current)
            current, at = "", at + 1
        else:
            current += char
            at += 1
    extension = line[at:]
    # A key starts after a space (or the start) and ends at an unescaped '='.
    starts = [m.start(1) for m in re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", extension)]
    starts = [s for s in starts if not _escaped(extension, s + extension[s:].index("="))]
    fields: dict[str, str] = {}
    for i, start in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(extension)
        key, _, raw = extension[start:end].partition("=")
        fields[key] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), raw)
    return header, fields


def _escaped(text: str, at: int) -> bool:
    backslashes = 0
    while at - 1 - backslashes >= 0 and text[at - 1 - backslashes] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def test_cef_escapes_backslash_pipe_equals_and_newlines_by_the_rules() -> None:
    assert cef_header("a|b\\c") == "a\\|b\\\\c"
    assert cef_header("a=b") == "a=b", "= needs no escape in the header"
    assert cef_header("one\ntwo\r\nthree") == "one two three"
    assert cef_value("a=b\\c|d") == "a\\=b\\\\c|d", "| needs no escape in the extension"
    assert cef_value("one\ntwo\rthree") == "one\\ntwo\\rthree"


def test_cef_header_and_extension_of_a_finding() -> None:
    line = CefFormat().format(FINDING).decode()
    header, fields = parse_cef(line)

    assert header[:2] == ["accessdrift", "accessdrift"]
    assert header[3:] == ["access_not_revoked:leaver", "Access not revoked after leaver", "10"]
    assert fields["externalId"] == FINDING.finding_id
    assert fields["duser"] == "alice"
    assert fields["rt"] == str(FINDING.detected_at_us // 1000)
    assert fields["cs1Label"] == "trigger"
    assert fields["cs1"] == "leaver"
    assert fields["msg"] == FINDING.summary
    assert "cs6" not in fields, "no exception, no value"
    assert "cs6Label" not in fields, "and no label for the absent value"


def test_cef_offboarding_evidence() -> None:
    header, fields = parse_cef(CefFormat().format(EVIDENCE).decode())

    assert header[3] == "offboarding"
    assert fields["externalId"] == EVIDENCE.offboarding_id
    assert fields["outcome"] == "late"
    assert fields["cn2"] == "1"


hostile = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from("\\|= \n\r"),
    min_size=1,
    max_size=40,
)


@given(identity=hostile, summary=hostile, entitlement=hostile)
def test_cef_no_input_text_escapes_its_field(identity: str, summary: str, entitlement: str) -> None:
    record = finding(identity_id=identity, summary=summary, entitlement=entitlement)
    line = CefFormat().format(record).decode()

    assert "\n" not in line
    assert "\r" not in line
    header, fields = parse_cef(line)
    assert header[3:] == ["access_not_revoked:leaver", "Access not revoked after leaver", "10"]
    assert fields["duser"] == identity
    assert fields["msg"] == summary
    assert fields["cs3"] == entitlement


@given(identity=hostile, summary=hostile)
def test_json_formats_keep_any_input_inside_its_string(identity: str, summary: str) -> None:
    record = finding(identity_id=identity, summary=summary)

    assert decode_record(JsonFormat().format(record)) == record
    assert _ocsf(record)["evidences"][0]["user"]["uid"] == identity
    assert _ecs(record)["message"] == summary
    for formatter in (JsonFormat(), OcsfFormat(), EcsFormat()):
        body = formatter.format(record)
        assert b"\n" not in body
        assert "\u2028".encode() not in body


def test_every_format_gives_the_same_bytes_for_the_same_record_and_an_envelope() -> None:
    for name, formatter in FORMATTERS.items():
        assert formatter.name == name
        assert formatter.format(FINDING) == formatter.format(FINDING)
        item = envelope(formatter, resolved(FINDING))
        assert item.id == f"{FINDING.finding_id}.resolved"
        assert item.key == FINDING.finding_id
        assert item.opening is False
        assert item.severity == "critical"
        assert envelope(formatter, EVIDENCE).severity is None
