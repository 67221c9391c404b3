"""The receiver with SETs signed in the tests: each mapped event type lands on its topic with
the right fields; every forgery and every stale or repeated SET is refused (or acknowledged
without a second record) with the RFC 8935 code a transmitter acts on, and nothing produced."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from accessdrift.models.events import decode_event
from accessdrift.streams.settings import Topics
from accessdrift.streams.signals.receiver import Receiver
from accessdrift.streams.signals.settings import IngestSettings
from tests.streams.signals.keys import (
    AUDIENCE,
    CAEP,
    ISSUER,
    NOW_S,
    RISC,
    Keys,
    claims,
    forge,
    sign,
)

TOKEN = "push-token-9f8e7d"
KEYS = Keys.make()
OTHER = Keys.make()


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.fail = fail

    async def send(self, records: list[tuple[str, bytes, bytes]]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.records.extend(records)

    def events(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [(t, k.decode(), json.loads(v)) for t, k, v in self.records]


def settings(tmp_path: Path, **transmitter: Any) -> IngestSettings:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(KEYS.jwks()))
    return IngestSettings.model_validate(
        {
            "transmitters": [
                {
                    "name": "idp",
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "jwks_file": str(jwks),
                    "token": {"env": "PUSH_TOKEN"},
                    "subjects": {
                        "identity": {"iss_sub": "{sub}", "email": "{email}", "opaque": "{id}"},
                        "device": {"iss_sub": "{sub}"},
                    },
                    **transmitter,
                }
            ]
        }
    )


def push(
    tmp_path: Path,
    bodies: list[bytes],
    producer: Recorder | None = None,
    headers: dict[str, str] | None = None,
    **transmitter: Any,
) -> tuple[list[tuple[int, Any]], Recorder, Receiver]:
    producer = producer or Recorder()
    receiver = Receiver(
        settings(tmp_path, **transmitter),
        Topics(),
        producer,
        CollectorRegistry(),
        {"PUSH_TOKEN": TOKEN},
        clock=lambda: NOW_S + 5,
    )
    sent_headers = {
        "Content-Type": "application/secevent+jwt",
        "Authorization": f"Bearer {TOKEN}",
        **(headers or {}),
    }

    async def go() -> list[tuple[int, Any]]:
        answers = []
        async with TestClient(TestServer(receiver.application())) as client:
            for body in bodies:
                response = await client.post("/ssf/idp", data=body, headers=sent_headers)
                text = await response.text()
                answers.append((response.status, json.loads(text) if text else None))
        return answers

    return asyncio.run(go()), producer, receiver


USER = {"format": "iss_sub", "iss": ISSUER, "sub": "user-7"}
DEVICE = {"format": "iss_sub", "iss": ISSUER, "sub": "mac-7"}


@pytest.mark.parametrize(
    ("events", "sub_id", "stream", "fields"),
    [
        (
            {CAEP + "session-revoked": {"event_timestamp": NOW_S - 60}},
            {"format": "complex", "user": USER, "session": {"format": "opaque", "id": "s-1"}},
            "entitlement.change",
            {"identity_id": "user-7", "entitlement": "s-1", "kind": "session", "action": "revoked"},
        ),
        (
            {CAEP + "session-revoked": {}},
            USER,
            "entitlement.change",
            {"entitlement": "sessions", "action": "revoked", "system": "idp"},
        ),
        (
            {
                CAEP + "credential-change": {
                    "credential_type": "fido2-roaming",
                    "change_type": "create",
                }
            },
            USER,
            "entitlement.change",
            {"entitlement": "fido2-roaming", "kind": "credential", "action": "granted"},
        ),
        (
            {CAEP + "credential-change": {"credential_type": "password", "change_type": "revoke"}},
            USER,
            "entitlement.change",
            {"entitlement": "password", "kind": "credential", "action": "revoked"},
        ),
        (
            {CAEP + "device-compliance-change": {"current_status": "not-compliant"}},
            {"format": "complex", "device": DEVICE},
            "device.posture",
            {"device_id": "mac-7", "posture": "noncompliant", "update": "partial"},
        ),
        (
            {CAEP + "token-claims-change": {"claims": {"role": "ro-admin"}}},
            USER,
            "identity.status",
            {"identity_id": "user-7", "role": "ro-admin", "update": "partial"},
        ),
        (
            {RISC + "account-disabled": {"subject": USER, "reason": "hijacking"}},
            None,
            "identity.status",
            {"identity_id": "user-7", "status": "suspended", "update": "partial"},
        ),
        (
            {RISC + "account-enabled": {"subject": {"format": "email", "email": "u7@example.com"}}},
            None,
            "identity.status",
            {"identity_id": "u7@example.com", "status": "active"},
        ),
        (
            {RISC + "account-purged": {"subject": USER}},
            None,
            "identity.status",
            {"identity_id": "user-7", "status": "terminated", "update": "partial"},
        ),
    ],
)
def test_each_mapped_event_type_lands_on_its_topic_with_its_fields(
    tmp_path: Path,
    events: dict[str, Any],
    sub_id: dict[str, Any] | None,
    stream: str,
    fields: dict[str, Any],
) -> None:
    extra = {} if sub_id is None else {"sub_id": sub_id}
    answers, producer, _ = push(tmp_path, [sign(KEYS, claims(events, **extra))])
    assert answers == [(202, None)]
    [(topic, key, value)] = producer.events()
    assert topic == Topics().for_stream(stream)
    assert value.items() >= fields.items()
    assert value["source"] == "idp"
    assert value["event_id"].startswith("756E69717565206964656E746966696572/")
    assert key == value.get("identity_id", value.get("device_id"))
    decode_event(stream, json.dumps(value))  # the contract takes it as it is
    if "update" in value:
        assert value["update"] == "partial", "a signal is never a snapshot"


def test_the_event_time_is_event_timestamp_else_toe_else_iat(tmp_path: Path) -> None:
    event = {RISC + "account-purged": {"subject": USER}}

    def at(timestamp: int) -> dict[str, Any]:
        return {RISC + "account-purged": {"subject": USER, "event_timestamp": timestamp}}

    bodies = [
        sign(KEYS, claims(at(NOW_S - 30), jti="a")),
        sign(KEYS, claims(at((NOW_S - 20) * 1000), jti="b")),  # CAEP's examples: milliseconds
        sign(KEYS, claims(event, jti="c", toe=NOW_S - 10)),
        sign(KEYS, claims(event, jti="d")),
    ]
    _, producer, _ = push(tmp_path, bodies)
    assert [value["occurred_at"] for _, _, value in producer.events()] == [
        "2026-01-05T07:59:30Z",
        "2026-01-05T07:59:40Z",
        "2026-01-05T07:59:50Z",
        "2026-01-05T08:00:00Z",
    ]


PURGED = claims({RISC + "account-purged": {"subject": USER}})
#: A format the transmitter's settings give no template for.
PHONE = {"format": "phone_number", "phone_number": "+12065550100"}


def _tampered() -> bytes:
    """The signature of one SET over the payload of another."""
    header, _, signature = sign(KEYS, PURGED).split(b".")
    other = sign(KEYS, {**PURGED, "jti": "tampered"}).split(b".")[1]
    return b".".join([header, other, signature])


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_tampered(), "invalid_key"),
        (forge({"alg": "none", "typ": "secevent+jwt"}, PURGED, None), "invalid_key"),
        (
            forge(
                {"alg": "HS256", "typ": "secevent+jwt", "kid": "rsa-1"},
                PURGED,
                KEYS.rsa_public_pem(),
            ),
            "invalid_key",
        ),
        (sign(OTHER, PURGED), "invalid_key"),
        (sign(KEYS, PURGED, kid="rotated-away"), "invalid_key"),
        (sign(KEYS, PURGED, alg="ES256", kid="rsa-1"), "invalid_key"),
        (sign(KEYS, {**PURGED, "iss": "https://evil.example.com/"}), "invalid_issuer"),
        (sign(KEYS, {**PURGED, "aud": "https://someone-else.example.com/"}), "invalid_audience"),
        (sign(KEYS, {**PURGED, "iat": NOW_S - 7200}), "invalid_request"),
        (sign(KEYS, {**PURGED, "iat": NOW_S + 3600}), "invalid_request"),
        (sign(KEYS, {k: v for k, v in PURGED.items() if k != "jti"}), "invalid_request"),
        (sign(KEYS, {**PURGED, "events": "account-purged"}), "invalid_request"),
        (b"not a jwt at all", "invalid_request"),
        (sign(KEYS, claims({RISC + "account-purged": {"subject": PHONE}})), "invalid_request"),
    ],
    ids=[
        "tampered",
        "alg-none",
        "hs256-with-rsa-public-key",
        "other-transmitters-key",
        "unknown-kid",
        "es256-naming-an-rsa-key",
        "wrong-issuer",
        "wrong-audience",
        "stale-iat",
        "future-iat",
        "no-jti",
        "events-not-an-object",
        "not-a-jwt",
        "unmapped-subject-format",
    ],
)
def test_a_forged_stale_or_malformed_set_is_refused_and_nothing_produced(
    tmp_path: Path, body: bytes, code: str
) -> None:
    answers, producer, receiver = push(tmp_path, [body])
    [(status, answer)] = answers
    assert (status, answer["err"]) == (400, code)
    assert answer["description"]
    assert producer.records == []
    rejected = receiver.registry.get_sample_value(
        "accessdrift_ingest_rejected_total", {"source": "idp", "reason": code}
    )
    assert rejected == 1


def test_a_repeated_jti_is_acknowledged_and_produced_once(tmp_path: Path) -> None:
    answers, producer, receiver = push(tmp_path, [sign(KEYS, PURGED), sign(KEYS, PURGED)])
    assert answers == [(202, None), (202, None)]
    assert len(producer.records) == 1
    assert (
        receiver.registry.get_sample_value(
            "accessdrift_ingest_requests_total", {"source": "idp", "outcome": "repeat"}
        )
        == 1
    )


def test_the_push_needs_its_bearer_token_and_the_set_media_type(tmp_path: Path) -> None:
    body = sign(KEYS, PURGED)
    for headers, status, code in [
        ({"Authorization": "Bearer wrong"}, 401, "authentication_failed"),
        ({"Authorization": ""}, 401, "authentication_failed"),
        ({"Content-Type": "application/json"}, 400, "invalid_request"),
    ]:
        answers, producer, _ = push(tmp_path, [body], headers=headers)
        assert [(s, a["err"]) for s, a in answers] == [(status, code)]
        assert producer.records == []
        assert TOKEN not in json.dumps(answers)


def test_kafka_down_answers_503_and_a_retry_is_then_taken(tmp_path: Path) -> None:
    down = Recorder(fail=True)
    answers, _, _ = push(tmp_path, [sign(KEYS, PURGED)], producer=down)
    assert answers[0][0] == 503
    answers, producer, _ = push(tmp_path, [sign(KEYS, PURGED)])
    assert answers == [(202, None)]
    assert len(producer.records) == 1


def test_an_unknown_kid_fetches_the_jwks_again_at_most_once_a_minute(tmp_path: Path) -> None:
    rotated = Keys.make()
    new_jwks = {"keys": [{**key, "kid": "rsa-2"} for key in rotated.jwks()["keys"][:1]]}
    fetched: list[str] = []
    now = [float(NOW_S)]

    async def fetch(url: str) -> bytes:
        fetched.append(url)
        return json.dumps(KEYS.jwks() if len(fetched) == 1 else new_jwks).encode()

    receiver = Receiver(
        IngestSettings.model_validate(
            {
                "transmitters": [
                    {
                        "name": "idp",
                        "issuer": ISSUER,
                        "audience": AUDIENCE,
                        "jwks_url": "https://idp.example.com/jwks",
                        "subjects": {"identity": {"iss_sub": "{sub}"}},
                    }
                ]
            }
        ),
        Topics(),
        Recorder(),
        CollectorRegistry(),
        {},
        clock=lambda: now[0],
        fetch=fetch,
    )
    steps = [
        (0, sign(KEYS, {**PURGED, "jti": "1"})),
        # A key rotated in 10 s after the start: too soon to fetch again, refused.
        (10, sign(rotated, {**PURGED, "jti": "2", "iat": NOW_S + 10}, kid="rsa-2")),
        # A minute on, the unknown kid fetches the JWKS again and the SET is taken.
        (70, sign(rotated, {**PURGED, "jti": "3", "iat": NOW_S + 70}, kid="rsa-2")),
        # Forged kids do not make the receiver fetch again within the minute.
        (80, sign(rotated, {**PURGED, "jti": "4", "iat": NOW_S + 80}, kid="forged")),
    ]

    async def go() -> list[int]:
        await receiver.start()
        statuses = []
        async with TestClient(TestServer(receiver.application())) as client:
            for at_s, body in steps:
                now[0] = NOW_S + at_s
                response = await client.post(
                    "/ssf/idp", data=body, headers={"Content-Type": "application/secevent+jwt"}
                )
                statuses.append(response.status)
        return statuses

    assert asyncio.run(go()) == [202, 400, 202, 400]
    assert fetched == ["https://idp.example.com/jwks"] * 2
