"""Finding records: deterministic ids, a fixed field order, and a sentence for every trigger."""

from __future__ import annotations

import json

import pytest

from accessdrift.models.findings import encode_record, finding_record, stable_id
from accessdrift.models.state import Obligation
from accessdrift.models.vocabulary import FINDING_KIND_OF, Trigger

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


def obligation(trigger: Trigger, **overrides: object) -> Obligation:
    per_entitlement = trigger not in ("joiner", "owner_departed")
    fields: dict[str, object] = {
        "finding_id": stable_id("alice", trigger),
        "trigger_key": "k",
        "trigger": trigger,
        "trigger_event_id": "ev-1",
        "system": "github" if per_entitlement else None,
        "entitlement": "org-admin" if per_entitlement else None,
        "entitlement_kind": "role" if per_entitlement else None,
        "device_id": "mac-1" if trigger == "device_untrusted" else None,
        "privileged": True,
        "triggered_at_us": 0,
        "deadline_us": HOUR_US,
        "severity": "critical",
        "context": {"device_untrusted": "lost", "owner_departed": "bob"}.get(trigger, "terminated"),
        "detected_at_us": 2 * HOUR_US,
    }
    fields.update(overrides)
    return Obligation(**fields)  # type: ignore[arg-type]


def test_ids_are_deterministic_and_tell_parts_apart() -> None:
    assert stable_id("a", "b") == stable_id("a", "b")
    assert stable_id("a", "b") != stable_id("ab", "")
    assert stable_id("a", None) == stable_id("a", "")
    assert len(stable_id("x")) == 32


@pytest.mark.parametrize("trigger", sorted(FINDING_KIND_OF))
def test_every_trigger_has_open_and_resolved_records_in_the_fixed_shape(trigger: Trigger) -> None:
    ob = obligation(trigger)
    opened = json.loads(encode_record(finding_record(ob, "alice", "service_account")))
    ob.met_at_us, ob.resolution = 3 * HOUR_US, "revoked"
    resolved = json.loads(encode_record(finding_record(ob, "alice", "service_account", "revoked")))

    assert list(opened) == FIELDS
    assert list(resolved) == FIELDS
    assert (opened["status"], resolved["status"]) == ("open", "resolved")
    assert opened["kind"] == FINDING_KIND_OF[trigger]
    assert (opened["resolved_at"], opened["time_to_revoke_seconds"]) == (None, None)
    assert resolved["resolved_at"] == "1970-01-01T03:00:00Z"
    assert resolved["time_to_revoke_seconds"] == 10800.0
    assert "alice" in opened["summary"]
    assert opened["summary"].endswith(".")
    assert resolved["summary"].startswith("Resolved:")
    assert "3h after" in resolved["summary"]


def test_an_expired_exception_is_named_in_the_summary() -> None:
    record = finding_record(obligation("leaver", exception_id="EXC-7"), "alice", "human")

    assert record.exception_id == "EXC-7"
    assert "Exception EXC-7 covered it until it expired." in record.summary


def test_equal_records_encode_to_equal_bytes() -> None:
    first = finding_record(obligation("leaver"), "alice", "human")
    second = finding_record(obligation("leaver"), "alice", "human")

    assert encode_record(first) == encode_record(second)
