"""Event contract v1: what is accepted, and what is rejected with which message."""

from __future__ import annotations

import json

import pytest

from accessdrift.models.errors import AccessdriftError, ContractError
from accessdrift.models.events import (
    STREAMS,
    AccessExceptionEvent,
    DevicePostureEvent,
    EntitlementChangeEvent,
    IdentityStatusEvent,
    decode_event,
    decode_line,
)
from accessdrift.models.messages import DevicePosture, EntitlementChange, StatusChange

JAN_5_9H_US = 1_767_603_600_000_000


def line(topic: str, **value: object) -> str:
    base: dict[str, object] = {"event_id": "e1", "occurred_at": "2026-01-05T09:00:00Z"}
    return json.dumps({"topic": topic, "value": {**base, **value}})


def reason(text: str) -> str:
    with pytest.raises(ContractError) as caught:
        decode_line(text)
    return str(caught.value)


def test_identity_status_decodes_with_defaults_and_becomes_a_message() -> None:
    topic, event = decode_line(line("identity.status", identity_id="alice", status="active"))

    assert topic == "identity.status"
    assert isinstance(event, IdentityStatusEvent)
    assert event.identity_kind == "human"
    message = event.to_message()
    assert message == StatusChange("alice", "e1", JAN_5_9H_US, "active", "human", None, None)


def test_an_offset_is_normalised_to_utc_microseconds() -> None:
    _, event = decode_line(
        line(
            "entitlement.change",
            occurred_at="2026-01-05T10:00:00.000250+01:00",
            identity_id="alice",
            system="github",
            entitlement="admin",
            action="granted",
        )
    )
    message = event.to_message()

    assert isinstance(message, EntitlementChange)
    assert message.occurred_at_us == JAN_5_9H_US + 250
    assert (message.kind, message.privileged, message.requires_trusted_device) == (
        "role",
        False,
        False,
    )


def test_device_binding_repeats_are_dropped_keeping_order() -> None:
    _, event = decode_line(
        line("device.posture", device_id="mac-1", posture="lost", identity_ids=["b", "a", "b"])
    )

    assert isinstance(event, DevicePostureEvent)
    assert event.to_message() == DevicePosture("mac-1", "e1", JAN_5_9H_US, "lost", ("b", "a"))


def test_exception_any_system_is_none() -> None:
    _, event = decode_line(
        line(
            "access.exception",
            exception_id="EXC-1",
            identity_id="alice",
            expires_at="2026-01-06T09:00:00Z",
            reason="handover",
            approved_by="ciso",
        )
    )

    assert isinstance(event, AccessExceptionEvent)
    message = event.to_message()
    assert (message.system, message.entitlement) == (None, None)
    assert message.expires_at_us == JAN_5_9H_US + 86_400_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            line(
                "identity.status",
                identity_id="a",
                status="active",
                occurred_at="2026-01-05T09:00:00",
            ),
            "value.occurred_at: timestamp has no UTC offset",
        ),
        (
            line("identity.status", identity_id="a", status="active", occurred_at=1767603600),
            "value.occurred_at: expected an RFC 3339 timestamp such as",
        ),
        (line("identity.status", identity_id="a", status="gone"), "value.status: Input should be"),
        (line("identity.status", identity_id="a"), "value: status is required in a snapshot"),
        (
            line("identity.status", identity_id="a", status="active", stauts="x"),
            "value.stauts: unknown field",
        ),
        (
            line(
                "entitlement.change",
                identity_id="a",
                system="s",
                entitlement="e",
                action="granted",
                privileged="true",
            ),
            "value.privileged: Input should be a valid boolean",
        ),
        (line("identity.status", identity_id="a", status="active", event_id=""), "value.event_id"),
        (
            line("identity.status", identity_id="a", status="active", owner_id="b"),
            "owner_id applies only to non-human identities",
        ),
        (
            line(
                "identity.status",
                identity_id="a",
                status="active",
                identity_kind="service_account",
                owner_id="a",
            ),
            "owner_id names the identity itself",
        ),
        (
            line(
                "access.exception",
                exception_id="x",
                identity_id="a",
                expires_at="2026-01-05T08:00:00Z",
                reason="r",
                approved_by="b",
            ),
            "expires_at must be later than occurred_at",
        ),
        (
            line(
                "access.exception",
                exception_id="x",
                identity_id="a",
                entitlement="admin",
                expires_at="2026-01-06T08:00:00Z",
                reason="r",
                approved_by="b",
            ),
            "must also name its system",
        ),
        (
            line("identity.sttus", identity_id="a"),
            "unknown stream 'identity.sttus' (expected one of",
        ),
        ('{"value": {}}', "missing 'topic'"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "Input should be an object"),
    ],
)
def test_contract_violations_say_where_and_what(text: str, expected: str) -> None:
    assert expected in reason(text)


def test_contract_errors_belong_to_the_package_hierarchy() -> None:
    with pytest.raises(AccessdriftError):
        decode_line("nope")


def test_decode_event_reads_a_bare_value_from_a_named_stream() -> None:
    event = decode_event(
        "entitlement.change",
        b'{"event_id":"e","occurred_at":"2026-01-05T09:00:00Z","identity_id":"a",'
        b'"system":"s","entitlement":"x","action":"revoked"}',
    )

    assert isinstance(event, EntitlementChangeEvent)
    assert event.action == "revoked"


def test_decode_event_rejects_an_unknown_stream() -> None:
    with pytest.raises(ContractError, match="unknown stream 'foo'"):
        decode_event("foo", b"{}")


def test_every_stream_is_known() -> None:
    assert STREAMS == (
        "identity.status",
        "device.posture",
        "entitlement.change",
        "access.exception",
    )
