"""Standard Webhooks signatures and the declarative mapping, through the receiver: unsigned,
wrongly signed, replayed-late or altered requests are refused; during a rotation either secret
signs; a payload the mapping cannot read is refused naming the field; nothing else produced."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from accessdrift.streams.settings import Topics
from accessdrift.streams.signals.receiver import Receiver
from accessdrift.streams.signals.settings import IngestSettings
from accessdrift.streams.signals.webhooks import secret_bytes, sign
from tests.streams.signals.test_receiver import Recorder

NOW_S = 1_767_600_000
OLD, NEW = b"old-secret-0123456789", b"new-secret-9876543210"
ENVIRON = {
    "OLD": "whsec_" + base64.b64encode(OLD).decode(),
    "NEW": "whsec_" + base64.b64encode(NEW).decode(),
}
SETTINGS = IngestSettings.model_validate(
    {
        "webhooks": [
            {
                "name": "hr",
                "stream": "identity.status",
                "secrets": [{"env": "OLD"}, {"env": "NEW"}],
                "fields": {
                    "identity_id": "/employee/id",
                    "occurred_at": "/changed_at",
                    "status": {
                        "pointer": "/employee/status",
                        "values": {"Active": "active", "Terminated": "terminated"},
                    },
                },
            }
        ]
    }
)
BODY = json.dumps(
    {"employee": {"id": "erin", "status": "Terminated"}, "changed_at": "2026-01-05T08:00:00Z"}
).encode()


def test_the_signature_matches_the_standard_webhooks_test_vector() -> None:
    secret = secret_bytes(SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(secret: bytes, body: bytes = BODY, at_s: int = NOW_S, **extra: str) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(at_s),
        "webhook-signature": sign(secret, "msg_1", at_s, body),
        **extra,
    }


def _post(requests: list[tuple[bytes, dict[str, str]]]) -> tuple[list[tuple[int, Any]], Recorder]:
    producer = Recorder()
    receiver = Receiver(
        SETTINGS, Topics(), producer, CollectorRegistry(), ENVIRON, clock=lambda: NOW_S + 10
    )

    async def go() -> list[tuple[int, Any]]:
        answers = []
        async with TestClient(TestServer(receiver.application())) as client:
            for body, headers in requests:
                response = await client.post("/webhooks/hr", data=body, headers=headers)
                text = await response.text()
                answers.append((response.status, json.loads(text) if text else None))
        return answers

    return asyncio.run(go()), producer


def test_either_secret_signs_during_a_rotation_and_the_event_is_a_partial_update() -> None:
    answers, producer = _post([(BODY, _headers(OLD)), (BODY, _headers(NEW))])
    assert answers == [(202, None), (202, None)]
    [(_, key, value), _] = producer.events()
    assert key == "erin"
    assert value == {
        "event_id": "hr:msg_1",
        "occurred_at": "2026-01-05T08:00:00Z",
        "source": "hr",
        "identity_id": "erin",
        "status": "terminated",
        "update": "partial",
    }


def _with_signature(signature: str) -> dict[str, str]:
    return {**_headers(NEW), "webhook-signature": signature}


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        (BODY, {}, 401, "headers are required"),
        (BODY, _headers(b"guessed-secret"), 401, "no webhook-signature matches"),
        (BODY.replace(b"erin", b"eve!"), _headers(NEW), 401, "no webhook-signature matches"),
        (BODY, _with_signature("v2," + sign(NEW, "msg_1", NOW_S, BODY)[3:]), 401, "no webhook"),
        (BODY, _headers(NEW, at_s=NOW_S - 3600), 400, "more than 300 s"),
        (BODY, {**_headers(NEW), "webhook-timestamp": "soon"}, 400, "Unix seconds"),
    ],
    ids=["unsigned", "wrong-secret", "altered-body", "unknown-version", "stale", "bad-time"],
)
def test_an_unsigned_wrong_altered_or_stale_request_is_refused(
    body: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    answers, producer = _post([(body, headers)])
    [(answered, error)] = answers
    assert answered == status
    assert message in error["error"]
    assert producer.records == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"employee": {"id": "erin", "status": "Retired"}, "changed_at": "2026-01-05T08:00:00Z"},
            "status: 'Retired' at /employee/status is not one of the mapped values",
        ),
        (
            {"employee": {"status": "Active"}, "changed_at": "2026-01-05T08:00:00Z"},
            "identity_id: nothing where the mapping looks",
        ),
        (
            {"employee": {"id": "erin", "status": "Active"}, "changed_at": "yesterday"},
            "occurred_at",
        ),
        (
            {
                "employee": {"id": "x" * 2000, "status": "Active"},
                "changed_at": "2026-01-05T08:00:00Z",
            },
            "maps to an invalid event: identity_id",
        ),
    ],
    ids=["unmapped-value", "missing-identity", "bad-time", "too-long-for-the-contract"],
)
def test_a_payload_the_mapping_cannot_read_is_refused_naming_the_field(
    payload: dict[str, Any], message: str
) -> None:
    body = json.dumps(payload).encode()
    answers, producer = _post([(body, _headers(NEW, body=body))])
    [(status, error)] = answers
    assert status == 400
    assert message in error["error"]
    assert producer.records == []
