"""`accessdrift ingest` as a real process between senders and a real worker on the embedded
broker: an MDM's and an HR system's signed webhooks, through their mapping files, and signed
CAEP and RISC SETs open findings; further signals resolve them."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from accessdrift.streams.broker import EmbeddedBroker, free_port
from accessdrift.streams.signals.webhooks import sign as sign_webhook
from tests.kafka import produce_events, read_topic
from tests.streams.signals.keys import CAEP, RISC, Keys, sign
from tests.workers import ACCESSDRIFT, HEAVY, WorkerProcess, wait_for, worker_env

pytestmark = HEAVY

POLICY = """
[leaver]
window = "3s"
privileged_window = "3s"
[device_untrusted]
lost_window = "3s"
[joiner]
window = "1h"
"""
ISSUER = "https://acme.okta.example/"
JAMF_SECRET = b"jamf-secret-0123456789abcdef"
HR_SECRET = b"hr-secret-abcdef0123456789"


def _whsec(secret: bytes) -> str:
    return "whsec_" + base64.b64encode(secret).decode()


def ingest_settings(port: int, jwks: Path) -> str:
    return f"""
[listen]
host = "127.0.0.1"
port = {port}

[[transmitters]]
name = "okta"
issuer = "{ISSUER}"
audience = "https://accessdrift.test/ssf/okta"
jwks_file = "{jwks.name}"
token = {{ env = "OKTA_PUSH_TOKEN" }}
subjects.identity = {{ iss_sub = "{{sub}}", email = "{{email}}" }}

[[webhooks]]
name = "jamf"
stream = "device.posture"
secrets = [{{ env = "JAMF_OLD_SECRET" }}, {{ env = "JAMF_SECRET" }}]
fields.device_id = "/event/udid"
fields.identity_ids = "/event/users"
fields.occurred_at = "/webhook/eventTimestamp"
[webhooks.fields.posture]
pointer = "/event/complianceState"
values = {{ Compliant = "compliant", NonCompliant = "noncompliant", Lost = "lost" }}

[[webhooks]]
name = "hr"
stream = "identity.status"
secrets = [{{ env = "HR_SECRET" }}]
fields.identity_id = "/employee/id"
fields.occurred_at = "/changedAt"
[webhooks.fields.status]
pointer = "/employee/employmentStatus"
values = {{ Active = "active", "On Leave" = "suspended", Terminated = "terminated" }}
"""


def _at(offset_s: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset_s)


def _text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Stack:
    broker: EmbeddedBroker
    env: dict[str, str]
    port: int
    keys: Keys
    home: Path

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def webhook(self, name: str, secret: bytes, payload: dict[str, Any]) -> int:
        body = json.dumps(payload).encode()
        webhook_id = f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time())
        return self.post(
            f"/webhooks/{name}",
            body,
            {
                "Content-Type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign_webhook(secret, webhook_id, timestamp, body),
            },
        )

    def set(self, events: dict[str, Any], **claims: Any) -> int:
        payload = {
            "iss": ISSUER,
            "aud": "https://accessdrift.test/ssf/okta",
            "iat": int(time.time()),
            "jti": uuid.uuid4().hex,
            "events": events,
            **claims,
        }
        return self.post(
            "/ssf/okta",
            sign(self.keys, payload),
            {"Content-Type": "application/secevent+jwt", "Authorization": "Bearer okta-push"},
        )

    def findings(self, expected: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        topic = self.env["ACCESSDRIFT_TOPIC_FINDINGS"]
        records = read_topic(self.broker.bootstrap, topic, expected, timeout_s)
        return [json.loads(value) for _, _, value, _ in records]


@pytest.fixture
def stack(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Stack]:
    (tmp_path / "policy.toml").write_text(POLICY)
    env = worker_env(broker, uuid.uuid4().hex[:8], tmp_path / "policy.toml", 0, tmp_path / "data")
    keys = Keys.make()
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks()))
    port = free_port()
    (tmp_path / "ingest.toml").write_text(ingest_settings(port, tmp_path / "jwks.json"))
    worker = WorkerProcess(env, tmp_path, "worker")
    ingest_env = {
        **env,
        "OKTA_PUSH_TOKEN": "okta-push",
        "JAMF_OLD_SECRET": _whsec(b"retired-secret-0000000000"),
        "JAMF_SECRET": _whsec(JAMF_SECRET),
        "HR_SECRET": _whsec(HR_SECRET),
    }
    log = tmp_path / "ingest.log"
    with log.open("wb") as output:
        ingest = subprocess.Popen(
            [ACCESSDRIFT, "ingest", "--config", str(tmp_path / "ingest.toml")],
            cwd=tmp_path,
            env=ingest_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        worker.wait_ready()
        wait_for(lambda: b"accessdrift ingest listening" in log.read_bytes(), 60, log)
        yield Stack(broker, env, port, keys, tmp_path)
    finally:
        ingest.terminate()
        ingest.wait(timeout=30)
        worker.stop()
    assert b"okta-push" not in log.read_bytes(), "no secret in the log"


def _state(finding: dict[str, Any]) -> tuple[str, str, str]:
    return (finding["identity_id"], finding["trigger"], finding["status"])


def test_webhooks_and_sets_open_findings_and_resolve_them(stack: Stack) -> None:
    topics = {
        stream: stack.env[f"ACCESSDRIFT_TOPIC_{stream.replace('.', '_').upper()}"]
        for stream in ("identity.status", "entitlement.change")
    }
    start = _text(_at(-60))

    def grant(
        who: str, system: str, entitlement: str, action: str = "granted", **fields: Any
    ) -> dict[str, Any]:
        return {
            "topic": "entitlement.change",
            "value": {
                "event_id": f"{action}-{who}-{entitlement}",
                "occurred_at": start if action == "granted" else _text(_at(0)),
                "identity_id": who,
                "system": system,
                "entitlement": entitlement,
                "action": action,
                **fields,
            },
        }

    produce_events(
        stack.broker.bootstrap,
        topics,
        [
            *(
                {
                    "topic": "identity.status",
                    "value": {
                        "event_id": f"hired-{who}",
                        "occurred_at": start,
                        "identity_id": who,
                        "status": "active",
                        "role": "engineer",
                    },
                }
                for who in ("carol", "dave", "erin")
            ),
            grant("carol", "okta", "mac-session", kind="session", device_id="mac-1"),
            grant("dave", "okta", "sessions", kind="session"),
            grant("erin", "github", "admin", privileged=True),
        ],
    )
    enrolled = {
        "webhook": {"eventTimestamp": int(_at(-50).timestamp() * 1000)},
        "event": {"udid": "mac-1", "complianceState": "Compliant", "users": ["carol"]},
    }
    assert stack.webhook("jamf", JAMF_SECRET, enrolled) == 202

    # The MDM reports the laptop lost, naming no users: carol stays bound to it.
    lost = {
        "webhook": {"eventTimestamp": int(_at(0).timestamp() * 1000)},
        "event": {"udid": "mac-1", "complianceState": "Lost"},
    }
    assert stack.webhook("jamf", JAMF_SECRET, lost) == 202
    terminated = {
        "employee": {"id": "erin", "employmentStatus": "Terminated"},
        "changedAt": _text(_at(0)),
    }
    assert stack.webhook("hr", HR_SECRET, terminated) == 202
    dave = {"format": "iss_sub", "iss": ISSUER, "sub": "dave"}
    assert stack.set({RISC + "account-purged": {"subject": dave}}) == 202
    # Refused: unsigned, signed with another secret, and a forged SET; none changes anything.
    assert stack.webhook("hr", b"guessed", terminated | {"employee": {"id": "carol"}}) == 401
    assert stack.post("/webhooks/hr", json.dumps(terminated).encode(), {}) == 401
    assert stack.set({RISC + "account-purged": {"subject": dave}}, iss="https://evil/") == 400

    opened = stack.findings(3)
    assert sorted(_state(f) for f in opened) == [
        ("carol", "device_untrusted", "open"),
        ("dave", "leaver", "open"),
        ("erin", "leaver", "open"),
    ]

    carol = {
        "format": "complex",
        "user": {"format": "iss_sub", "iss": ISSUER, "sub": "carol"},
        "session": {"format": "opaque", "id": "mac-session"},
    }
    assert stack.set({CAEP + "session-revoked": {}}, sub_id=carol) == 202
    assert stack.set({CAEP + "session-revoked": {}}, sub_id=dave) == 202
    revoked = grant("erin", "github", "admin", "revoked", privileged=True)
    produce_events(stack.broker.bootstrap, topics, [revoked])
    records = stack.findings(3 + 3 + 2)  # and the two leavers' offboarding evidence
    resolved = sorted(_state(r) for r in records if r.get("status") == "resolved")
    assert resolved == [
        ("carol", "device_untrusted", "resolved"),
        ("dave", "leaver", "resolved"),
        ("erin", "leaver", "resolved"),
    ]
    revocations = sorted(
        (r["identity_id"], r["system"], r["entitlement"])
        for r in records
        if r.get("status") == "resolved"
    )
    assert revocations == [
        ("carol", "okta", "mac-session"),
        ("dave", "okta", "sessions"),
        ("erin", "github", "admin"),
    ]
