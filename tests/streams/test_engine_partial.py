"""Partial updates (`"update": "partial"`) change only the fields they carry.

Standard signals know one thing about their subject: a RISC `account-disabled` says nothing of
role or owner, a CAEP `device-compliance-change` names no users. Sent as snapshots they would
unlink owners, clear roles and unbind devices; these tests run contract JSON through the decoder
and the engine and check that a partial update leaves everything it does not name as it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from accessdrift.models.clock import format_us
from accessdrift.models.decoding import decode_message
from accessdrift.models.errors import ContractError
from accessdrift.models.findings import FindingRecord, Record
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime

S = 1_000_000
H = 3600 * S
DAY = 24 * H
T0 = 1_767_600_000 * S


class _Collect:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def emit(self, record: Record) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass


def _event(stream: str, at_us: int, **fields: Any) -> tuple[str, bytes]:
    value = {"event_id": f"{stream}-{at_us}", "occurred_at": format_us(at_us), **fields}
    return stream, json.dumps(value).encode()


def _run(*events: tuple[str, bytes], until_us: int) -> list[FindingRecord]:
    sink = _Collect()
    runtime = LocalRuntime(Engine(Policy()), sink)
    for stream, payload in events:
        message = decode_message(stream, payload)
        runtime.advance(message.occurred_at_us)
        runtime.submit(message, message.occurred_at_us)
    runtime.advance(until_us)
    # These identities are active without a managed device: their joiner findings are beside
    # the point here.
    return [
        r
        for r in sink.records
        if isinstance(r, FindingRecord) and r.status == "open" and r.trigger != "joiner"
    ]


def _status(at_us: int, identity_id: str, **fields: Any) -> tuple[str, bytes]:
    return _event("identity.status", at_us, identity_id=identity_id, **fields)


def _grant(at_us: int, identity_id: str, entitlement: str, **fields: Any) -> tuple[str, bytes]:
    return _event(
        "entitlement.change",
        at_us,
        identity_id=identity_id,
        system="github",
        entitlement=entitlement,
        action="granted",
        privileged=True,
        **fields,
    )


def _devices(at_us: int, posture: str, **fields: Any) -> tuple[str, bytes]:
    return _event("device.posture", at_us, device_id="mac-1", posture=posture, **fields)


def test_a_partial_status_keeps_the_owner_that_a_snapshot_would_unlink() -> None:
    owned = (
        _status(T0, "alice", status="active"),
        _status(T0, "ci-bot", status="active", identity_kind="service_account", owner_id="alice"),
        _grant(T0, "ci-bot", "deploy"),
    )
    # A signal suspends the service account for a while and lifts it; then the owner leaves.
    later = (
        _status(T0 + H, "ci-bot", update="partial", status="suspended"),
        _status(T0 + 2 * H, "ci-bot", update="partial", status="active"),
        _status(T0 + 3 * H, "alice", status="terminated"),
    )
    partial = _run(*owned, *later, until_us=T0 + 30 * DAY)
    assert [(f.identity_id, f.trigger) for f in partial] == [("ci-bot", "owner_departed")]

    # The same statuses as snapshots unlink the owner: the orphan is never found. This is the
    # trap a partial update avoids.
    as_snapshots = (
        _status(T0 + H, "ci-bot", status="suspended", identity_kind="service_account"),
        _status(T0 + 2 * H, "ci-bot", status="active", identity_kind="service_account"),
        later[2],
    )
    assert [f.trigger for f in _run(*owned, *as_snapshots, until_us=T0 + 30 * DAY)] == []


def test_a_partial_status_keeps_the_role_and_a_partial_role_keeps_the_status() -> None:
    start = (_status(T0, "bob", status="active", role="engineer"), _grant(T0, "bob", "admin"))
    kept = _run(
        *start, _status(T0 + H, "bob", update="partial", status="active"), until_us=T0 + 30 * DAY
    )
    assert kept == [], "the same role: no mover obligation"

    role_only = _status(T0 + H, "bob", update="partial", role="sales")
    moved = _run(*start, role_only, until_us=T0 + 30 * DAY)
    assert [(f.trigger, f.entitlement) for f in moved] == [("mover", "admin")]

    left = _run(
        *start,
        _status(T0 + H, "bob", update="partial", role="sales"),
        _status(T0 + 2 * H, "bob", update="partial", status="terminated"),
        until_us=T0 + 30 * DAY,
    )
    assert [(f.trigger, f.entitlement) for f in left] == [("leaver", "admin")], (
        "a termination ends the role review: offboarding takes over"
    )


def test_a_partial_posture_keeps_the_binding_that_a_snapshot_without_users_clears() -> None:
    start = (
        _status(T0, "carol", status="active"),
        _devices(T0, "compliant", identity_ids=["carol"]),
        _grant(T0, "carol", "sso-session", kind="session", device_id="mac-1"),
    )
    partial = _run(*start, _devices(T0 + H, "lost", update="partial"), until_us=T0 + DAY)
    assert [(f.identity_id, f.trigger) for f in partial] == [("carol", "device_untrusted")]

    unbound = _run(*start, _devices(T0 + H, "lost"), until_us=T0 + DAY)
    assert [f.trigger for f in unbound] != ["device_untrusted"]


def test_a_partial_update_for_an_unknown_identity_judges_nothing_until_a_status_arrives() -> None:
    found = _run(
        _grant(T0, "dan", "admin"),
        _status(T0 + H, "dan", update="partial", role="engineer"),
        until_us=T0 + 30 * DAY,
    )
    assert found == []
    later = _run(
        _grant(T0, "dan", "admin"),
        _status(T0 + H, "dan", update="partial", role="engineer"),
        _status(T0 + 2 * H, "dan", update="partial", status="terminated"),
        until_us=T0 + 30 * DAY,
    )
    assert [(f.trigger, f.entitlement) for f in later] == [("leaver", "admin")]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"identity_id": "a"}, "status is required in a snapshot"),
        ({"identity_id": "a", "update": "partial"}, "a partial update changes nothing"),
        ({"identity_id": "a", "update": "partial", "status": None}, "status cannot be null"),
        ({"identity_id": "a", "update": "often", "status": "active"}, "update: Input should"),
    ],
)
def test_an_incomplete_or_empty_update_is_refused(fields: dict[str, Any], reason: str) -> None:
    stream, payload = _event("identity.status", T0, **fields)
    with pytest.raises(ContractError, match=reason):
        decode_message(stream, payload)
