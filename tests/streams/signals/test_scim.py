"""SCIM events (RFC 9967) through the receiver. The SETs follow the RFC's examples (subject of
format `scim`, the representation or the PatchOp in `data`, an audience list of feeds); they
are rebuilt here, not copied, since the RFC's text is not reachable from the build machines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.streams.signals.keys import AUDIENCE, ISSUER, Keys, claims, sign
from tests.streams.signals.test_receiver import KEYS, push

SCIM = "urn:ietf:params:scim:event:"
USER = {"format": "scim", "uri": "/Users/44f6142df96bd6ab61e7521d9", "externalId": "jdoe"}
GROUP = {"format": "scim", "uri": "/Groups/b5d7b2a8b0ab469ba0f9f09fd81a1bd8"}
BABS = "2819c223-7f76-453a-919d-413861904646"
MEMBER = {"value": BABS, "$ref": f"https://example.com/v2/Users/{BABS}", "display": "Babs"}
SCIM_SUBJECTS = {"subjects": {"identity": {"scim": "{id}"}}}


def _set(event: str, body: dict[str, Any], subject: dict[str, Any], keys: Keys = KEYS) -> bytes:
    # RFC 9967's SETs name several feeds in `aud`; the receiver's own audience is one of them.
    audience = ["https://scim.example.com/Feeds/98d52461fa5bbc879593b7754", AUDIENCE]
    return sign(keys, claims({event: body}, sub_id=subject, aud=audience, iss=ISSUER))


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": list(operations),
        }
    }


@pytest.mark.parametrize(
    ("event", "body", "subject", "expected"),
    [
        ("prov:deactivate", {}, USER, [("44f6142df96bd6ab61e7521d9", "status", "suspended")]),
        ("prov:activate", {}, USER, [("44f6142df96bd6ab61e7521d9", "status", "active")]),
        ("prov:delete", {}, USER, [("44f6142df96bd6ab61e7521d9", "status", "terminated")]),
        (
            "prov:create:full",
            {
                "data": {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": "jdoe",
                    "active": True,
                }
            },
            USER,
            [("44f6142df96bd6ab61e7521d9", "status", "active")],
        ),
        (
            "prov:create:full",
            {
                "data": {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": "jdoe",
                    "emails": [{"value": "jdoe@example.com"}],
                }
            },
            USER,
            [],
        ),
        (
            "prov:patch:full",
            _patch({"op": "replace", "path": "active", "value": False}),
            USER,
            [("44f6142df96bd6ab61e7521d9", "status", "suspended")],
        ),
        (
            "prov:patch:full",
            _patch({"op": "replace", "value": {"active": False}}),
            USER,
            [("44f6142df96bd6ab61e7521d9", "status", "suspended")],
        ),
        (
            "prov:patch:full",
            _patch({"op": "add", "path": "members", "value": [MEMBER]}),
            GROUP,
            [(BABS, "granted", "b5d7b2a8b0ab469ba0f9f09fd81a1bd8")],
        ),
        (
            "prov:patch:full",
            _patch({"op": "remove", "path": f'members[value eq "{BABS}"]'}),
            GROUP,
            [(BABS, "revoked", "b5d7b2a8b0ab469ba0f9f09fd81a1bd8")],
        ),
        (
            "prov:put:full",
            {"data": {"displayName": "Admins", "members": [MEMBER]}},
            GROUP,
            [(BABS, "granted", "b5d7b2a8b0ab469ba0f9f09fd81a1bd8")],
        ),
        ("prov:patch:notice", {"attributes": ["emails"]}, USER, []),
        ("prov:delete", {}, GROUP, []),
    ],
    ids=[
        "deactivate",
        "activate",
        "delete-user",
        "create-active",
        "create-without-active",
        "patch-active",
        "patch-value-object",
        "add-member",
        "remove-member-filter",
        "put-group",
        "notice",
        "delete-group",
    ],
)
def test_scim_events_map_users_to_status_and_group_members_to_entitlements(
    tmp_path: Path,
    event: str,
    body: dict[str, Any],
    subject: dict[str, Any],
    expected: list[tuple[str, str, str]],
) -> None:
    answers, producer, receiver = push(
        tmp_path, [_set(SCIM + event, body, subject)], **SCIM_SUBJECTS
    )
    assert answers == [(202, None)]
    mapped = []
    for _, key, value in producer.events():
        assert key == value["identity_id"]
        if "status" in value:
            assert value["update"] == "partial"
            mapped.append((key, "status", value["status"]))
        else:
            assert (value["kind"], value["system"]) == ("group", "idp")
            mapped.append((key, value["action"], value["entitlement"]))
    assert mapped == expected
    unmapped = receiver.registry.get_sample_value(
        "accessdrift_ingest_unmapped_events_total", {"source": "idp"}
    )
    assert unmapped == (None if expected else 1), "counted when nothing maps"


def test_the_drafts_upper_case_urns_are_taken_too(tmp_path: Path) -> None:
    body = _set("urn:ietf:params:SCIM:event:prov:deactivate", {}, USER)
    answers, producer, _ = push(tmp_path, [body], **SCIM_SUBJECTS)
    assert answers == [(202, None)]
    assert [value["status"] for _, _, value in producer.events()] == ["suspended"]


def test_a_scim_event_about_something_else_is_refused(tmp_path: Path) -> None:
    subject = {"format": "scim", "uri": "/Devices/1"}
    answers, producer, _ = push(
        tmp_path, [_set(SCIM + "prov:delete", {}, subject)], **SCIM_SUBJECTS
    )
    assert answers[0][0] == 400
    assert answers[0][1]["err"] == "invalid_request"
    assert producer.records == []
