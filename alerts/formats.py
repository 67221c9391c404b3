"""Formats: a record in the shape a SIEM expects, as bytes (what a transport then carries).

One interface, `Formatter`, with one implementation per format:

* `json`: accessdrift's canonical JSON (`models.findings.encode_record`);
* `ocsf`: OCSF 1.1 Detection Finding (class 2004) for findings, Compliance Finding (class 2003)
  for offboarding evidence;
* `ecs`: Elastic Common Schema 8.x documents;
* `cef`: ArcSight Common Event Format, version 0.

Formatting is pure: the same record always gives the same bytes, and nothing the input put in a
record can break out of its field (JSON is escaped by the encoder, CEF by its own rules).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import msgspec

from accessdrift.models.clock import format_us
from accessdrift.models.findings import (
    FindingRecord,
    OffboardingRecord,
    Record,
    encode_record,
    happened_at_us,
    record_key,
)
from accessdrift.models.text import json_safe
from accessdrift.models.vocabulary import Severity

FormatName = Literal["json", "ocsf", "ecs", "cef"]
PRODUCT: Final = "accessdrift"
VERSION: Final = importlib.metadata.version("accessdrift")
OCSF_VERSION: Final = "1.1.0"
ECS_VERSION: Final = "8.11.0"

_US_PER_MS: Final = 1000
_ENCODER: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One formatted record and what a transport needs to know of it without parsing `body`.

    `id`: unique per record (a finding's open and resolved records differ), stable across
    redeliveries, so a receiver can drop repeats. `key`: the finding (or offboarding) id, what
    keeps one finding's records together. `severity`: None for offboarding evidence; `opening`:
    an open finding (bad news), not a resolution or evidence.
    """

    id: str
    key: str
    time_us: int
    severity: Severity | None
    opening: bool
    body: bytes
    is_json: bool


class Formatter(Protocol):
    """Record → bytes in one format."""

    @property
    def name(self) -> FormatName: ...

    @property
    def is_json(self) -> bool:
        """Whether `format` gives a JSON object (carried as JSON by HEC and webhooks) or a line
        of text (carried as a string)."""
        ...

    def format(self, record: Record) -> bytes: ...


def envelope(formatter: Formatter, record: Record) -> Envelope:
    """The record formatted, with its id, time and severity alongside."""
    body = formatter.format(record)
    if isinstance(record, OffboardingRecord):
        return Envelope(
            record_key(record),
            record.offboarding_id,
            record.completed_at_us,
            None,
            False,
            body,
            formatter.is_json,
        )
    return Envelope(
        record_key(record),
        record.finding_id,
        happened_at_us(record),
        record.severity,
        record.status == "open",
        body,
        formatter.is_json,
    )


def _without_nulls(value: Any) -> Any:
    """The document without absent attributes: OCSF and ECS leave out what does not apply."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _json(document: dict[str, Any]) -> bytes:
    return json_safe(_ENCODER.encode(_without_nulls(document)))


def _ms(moment_us: int) -> int:
    return moment_us // _US_PER_MS


def _title(record: FindingRecord) -> str:
    words = record.kind.replace("_", " ")
    return f"{words[0].upper()}{words[1:]} after {record.trigger.replace('_', ' ')}"


# -- canonical JSON ------------------------------------------------------------------------------


class JsonFormat:
    """accessdrift's own canonical JSON, as on the findings topic."""

    name: Final = "json"
    is_json: Final = True

    def format(self, record: Record) -> bytes:
        return encode_record(record)


# -- OCSF ----------------------------------------------------------------------------------------

#: OCSF severity_id: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
OCSF_SEVERITY: Final[dict[Severity, int]] = {"low": 2, "medium": 3, "high": 4, "critical": 5}
OCSF_DETECTION_FINDING: Final = 2004
OCSF_COMPLIANCE_FINDING: Final = 2003
OCSF_FINDINGS_CATEGORY: Final = 2
#: activity_id: 1 Create, 3 Close. status_id: 1 New, 4 Resolved.
OCSF_CREATE, OCSF_CLOSE = 1, 3
OCSF_NEW, OCSF_RESOLVED = 1, 4
#: Compliance status_id: 1 Pass, 3 Fail.
OCSF_PASS, OCSF_FAIL = 1, 3
#: The OCSF user type_id: 1 User, 99 Other (a non-human identity).
OCSF_USER_TYPE: Final = {"human": (1, "User")}


def _ocsf_user(identity_id: str, identity_kind: str) -> dict[str, Any]:
    type_id, type_name = OCSF_USER_TYPE.get(identity_kind, (99, "Other"))
    return {"uid": identity_id, "name": identity_id, "type_id": type_id, "type": type_name}


def _ocsf_metadata(uid: str, record_time_us: int) -> dict[str, Any]:
    return {
        "version": OCSF_VERSION,
        "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION},
        "uid": uid,
        "logged_time": _ms(record_time_us),
    }


class OcsfFormat:
    """OCSF 1.1: a Detection Finding per finding record (activity Create when it opens, Close
    when it resolves), a Compliance Finding per offboarding record."""

    name: Final = "ocsf"
    is_json: Final = True

    def format(self, record: Record) -> bytes:
        if isinstance(record, OffboardingRecord):
            return _json(self._offboarding(record))
        return _json(self._finding(record))

    def _finding(self, r: FindingRecord) -> dict[str, Any]:
        closing = r.status == "resolved"
        activity_id = OCSF_CLOSE if closing else OCSF_CREATE
        time_us = happened_at_us(r)
        resource: dict[str, Any] = {}
        if r.system is not None:
            resource = {
                "uid": f"{r.system}/{r.entitlement}",
                "name": r.entitlement,
                "type": r.entitlement_kind,
                "group": {"name": r.system},
            }
        elif r.device_id is not None:
            resource = {"uid": r.device_id, "name": r.device_id, "type": "device"}
        document: dict[str, Any] = {
            "class_uid": OCSF_DETECTION_FINDING,
            "class_name": "Detection Finding",
            "category_uid": OCSF_FINDINGS_CATEGORY,
            "category_name": "Findings",
            "activity_id": activity_id,
            "activity_name": "Close" if closing else "Create",
            "type_uid": OCSF_DETECTION_FINDING * 100 + activity_id,
            "time": _ms(time_us),
            "severity_id": OCSF_SEVERITY[r.severity],
            "severity": r.severity.capitalize(),
            "status_id": OCSF_RESOLVED if closing else OCSF_NEW,
            "status": "Resolved" if closing else "New",
            "message": r.summary,
            "metadata": _ocsf_metadata(record_key(r), time_us),
            "finding_info": {
                "uid": r.finding_id,
                "title": _title(r),
                "desc": r.summary,
                "types": [r.kind],
                "analytic": {"uid": r.trigger, "name": r.trigger, "type_id": 1, "type": "Rule"},
                "created_time": _ms(r.detected_at_us),
                "first_seen_time": _ms(r.triggered_at_us),
            },
            "evidences": [{"user": _ocsf_user(r.identity_id, r.identity_kind)}],
            "resources": [resource] if resource else [],
            "start_time": _ms(r.triggered_at_us),
            "end_time": None if r.resolved_at_us is None else _ms(r.resolved_at_us),
            "unmapped": {
                "identity_kind": r.identity_kind,
                "deadline": format_us(r.deadline_us),
                "trigger_event_id": r.trigger_event_id,
                "exception_id": r.exception_id,
                "device_id": r.device_id,
                "time_to_revoke_seconds": r.time_to_revoke_s,
            },
        }
        return document

    def _offboarding(self, r: OffboardingRecord) -> dict[str, Any]:
        passed = r.all_within_window
        return {
            "class_uid": OCSF_COMPLIANCE_FINDING,
            "class_name": "Compliance Finding",
            "category_uid": OCSF_FINDINGS_CATEGORY,
            "category_name": "Findings",
            "activity_id": OCSF_CLOSE,
            "activity_name": "Close",
            "type_uid": OCSF_COMPLIANCE_FINDING * 100 + OCSF_CLOSE,
            "time": _ms(r.completed_at_us),
            "severity_id": 1,
            "severity": "Informational",
            "status_id": OCSF_RESOLVED,
            "status": "Resolved",
            "message": (
                f"Offboarding of {r.identity_id} is complete: {len(r.entitlements)} "
                f"entitlement(s) revoked, {'all' if passed else 'not all'} within the window."
            ),
            "metadata": _ocsf_metadata(r.offboarding_id, r.completed_at_us),
            "finding_info": {
                "uid": r.offboarding_id,
                "title": "Offboarding evidence",
                "types": ["offboarding"],
                "first_seen_time": _ms(r.terminated_at_us),
            },
            "compliance": {
                "standards": ["accessdrift offboarding"],
                "control": "leaver",
                "status_id": OCSF_PASS if passed else OCSF_FAIL,
                "status": "Pass" if passed else "Fail",
            },
            "evidences": [{"user": _ocsf_user(r.identity_id, r.identity_kind)}],
            "resources": [
                {
                    "uid": f"{e.system}/{e.entitlement}",
                    "name": e.entitlement,
                    "type": e.entitlement_kind,
                    "group": {"name": e.system},
                    "data": {
                        "privileged": e.privileged,
                        "deadline": format_us(e.deadline_us),
                        "revoked_at": format_us(e.revoked_at_us),
                        "within_window": e.within_window,
                        "finding_id": e.finding_id,
                    },
                }
                for e in r.entitlements
            ],
            "start_time": _ms(r.terminated_at_us),
            "end_time": _ms(r.completed_at_us),
            "unmapped": {"trigger_event_id": r.trigger_event_id},
        }


# -- ECS -----------------------------------------------------------------------------------------

#: ECS event.severity is a number; higher is more severe (the scale is the producer's).
ECS_SEVERITY: Final[dict[Severity, int]] = {"low": 21, "medium": 47, "high": 73, "critical": 99}


class EcsFormat:
    """Elastic Common Schema: an alert document per finding record, an event per offboarding."""

    name: Final = "ecs"
    is_json: Final = True

    def format(self, record: Record) -> bytes:
        if isinstance(record, OffboardingRecord):
            return _json(self._offboarding(record))
        return _json(self._finding(record))

    def _finding(self, r: FindingRecord) -> dict[str, Any]:
        resolved = r.status == "resolved"
        document: dict[str, Any] = {
            "@timestamp": format_us(happened_at_us(r)),
            "ecs": {"version": ECS_VERSION},
            "message": r.summary,
            "event": {
                "kind": "alert",
                "category": ["iam"],
                "type": ["info"],
                "action": f"finding-{r.status}",
                "id": record_key(r),
                "code": r.kind,
                "severity": ECS_SEVERITY[r.severity],
                "start": format_us(r.triggered_at_us),
                "created": format_us(r.detected_at_us),
                "module": PRODUCT,
                "dataset": f"{PRODUCT}.finding",
                "provider": PRODUCT,
                "outcome": "success" if resolved else "failure",
            },
            "rule": {
                "id": r.trigger,
                "name": _title(r),
                "category": r.kind,
                "ruleset": PRODUCT,
                "version": VERSION,
                "description": r.summary,
            },
            "user": {"id": r.identity_id, "name": r.identity_id},
            "observer": {"product": PRODUCT, "vendor": PRODUCT, "version": VERSION},
            "labels": {
                "finding_id": r.finding_id,
                "status": r.status,
                "severity": r.severity,
                "identity_kind": r.identity_kind,
                "trigger_event_id": r.trigger_event_id,
                "deadline": format_us(r.deadline_us),
            },
        }
        if resolved and r.resolved_at_us is not None:
            document["event"]["end"] = format_us(r.resolved_at_us)
            document["event"]["duration"] = (r.resolved_at_us - r.triggered_at_us) * 1000
        if r.system is not None:
            document["labels"]["system"] = r.system
            document["labels"]["entitlement"] = r.entitlement
            document["labels"]["entitlement_kind"] = r.entitlement_kind
        if r.device_id is not None:
            document["host"] = {"id": r.device_id}
        if r.exception_id is not None:
            document["labels"]["exception_id"] = r.exception_id
        return document

    def _offboarding(self, r: OffboardingRecord) -> dict[str, Any]:
        late = r.revoked_late
        return {
            "@timestamp": format_us(r.completed_at_us),
            "ecs": {"version": ECS_VERSION},
            "message": (
                f"Offboarding of {r.identity_id} is complete: {len(r.entitlements)} "
                f"entitlement(s) revoked, {late} late."
            ),
            "event": {
                "kind": "event",
                "category": ["iam"],
                "type": ["user", "deletion"],
                "action": "offboarding-completed",
                "id": r.offboarding_id,
                "start": format_us(r.terminated_at_us),
                "end": format_us(r.completed_at_us),
                "module": PRODUCT,
                "dataset": f"{PRODUCT}.offboarding",
                "provider": PRODUCT,
                "outcome": "success" if r.all_within_window else "failure",
            },
            "user": {"id": r.identity_id, "name": r.identity_id},
            "observer": {"product": PRODUCT, "vendor": PRODUCT, "version": VERSION},
            "labels": {
                "identity_kind": r.identity_kind,
                "trigger_event_id": r.trigger_event_id,
                "all_within_window": str(r.all_within_window).lower(),
                "entitlements_revoked": str(len(r.entitlements)),
                "entitlements_late": str(late),
            },
        }


# -- CEF -----------------------------------------------------------------------------------------

#: CEF severity: 0-3 low, 4-6 medium, 7-8 high, 9-10 very high.
CEF_SEVERITY: Final[dict[Severity, int]] = {"low": 3, "medium": 5, "high": 8, "critical": 10}


def cef_header(value: str) -> str:
    """A header field by the CEF rules: `\\` and `|` escaped with a backslash. A header cannot
    span lines, and CEF defines no escape for that, so line breaks become spaces."""
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def cef_value(value: str) -> str:
    """An extension value by the CEF rules: `\\` and `=` escaped with a backslash, line breaks
    written `\\n` and `\\r`."""
    value = value.replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r", "\\r").replace("\n", "\\n")


def _custom(slot: str, label: str, value: object) -> list[tuple[str, object]]:
    """A CEF custom field (`cs1`, `cn1`, ...) with its label, or nothing when it has no value."""
    return [] if value is None else [(f"{slot}Label", label), (slot, value)]


def _cef(signature: str, name: str, severity: int, extension: list[tuple[str, object]]) -> bytes:
    header = "|".join(
        ["CEF:0", PRODUCT, PRODUCT, cef_header(VERSION), cef_header(signature), cef_header(name)]
    )
    fields = " ".join(
        f"{key}={cef_value(str(value))}" for key, value in extension if value is not None
    )
    return f"{header}|{severity}|{fields}".encode()


class CefFormat:
    """ArcSight CEF 0: one line per record, `externalId` the finding id (or offboarding id)."""

    name: Final = "cef"
    is_json: Final = False

    def format(self, record: Record) -> bytes:
        if isinstance(record, OffboardingRecord):
            late = record.revoked_late
            return _cef(
                "offboarding",
                "Offboarding evidence",
                1,
                [
                    ("rt", _ms(record.completed_at_us)),
                    ("externalId", record.offboarding_id),
                    ("duser", record.identity_id),
                    ("start", _ms(record.terminated_at_us)),
                    ("end", _ms(record.completed_at_us)),
                    ("outcome", "within-window" if record.all_within_window else "late"),
                    *_custom("cn1", "entitlementsRevoked", len(record.entitlements)),
                    *_custom("cn2", "entitlementsLate", late),
                    *_custom("cs1", "identityKind", record.identity_kind),
                ],
            )
        r = record
        return _cef(
            f"{r.kind}:{r.trigger}",
            _title(r),
            CEF_SEVERITY[r.severity],
            [
                ("rt", _ms(happened_at_us(r))),
                ("externalId", r.finding_id),
                ("act", f"finding-{r.status}"),
                ("outcome", r.status),
                ("cat", r.kind),
                ("duser", r.identity_id),
                ("start", _ms(r.triggered_at_us)),
                ("end", None if r.resolved_at_us is None else _ms(r.resolved_at_us)),
                ("deviceExternalId", r.device_id),
                *_custom("cs1", "trigger", r.trigger),
                *_custom("cs2", "system", r.system),
                *_custom("cs3", "entitlement", r.entitlement),
                *_custom("cs4", "identityKind", r.identity_kind),
                *_custom("cs5", "triggerEventId", r.trigger_event_id),
                *_custom("cs6", "exceptionId", r.exception_id),
                *_custom("deviceCustomDate1", "deadline", _ms(r.deadline_us)),
                ("msg", r.summary),
            ],
        )


FORMATTERS: Final[dict[FormatName, Formatter]] = {
    "json": JsonFormat(),
    "ocsf": OcsfFormat(),
    "ecs": EcsFormat(),
    "cef": CefFormat(),
}
