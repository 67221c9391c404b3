"""The live runtime against the real embedded broker: a real `accessdrift worker` process fed
through Kafka, read back from its output topics."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.ingest import HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC
from tests.kafka import read_topic, send_raw
from tests.workers import ACCESSDRIFT, WorkerProcess, worker_env

POLICY = """
[leaver]
window = "6s"
privileged_window = "3s"
[joiner]
window = "1h"
"""


@dataclass
class Worker:
    broker: EmbeddedBroker
    env: dict[str, str]
    web_port: int

    def topic(self, name: str) -> str:
        return self.env[f"ACCESSDRIFT_TOPIC_{name.upper()}"]

    def produce(self, tmp_path: Path, *lines: dict[str, object]) -> None:
        path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        result = subprocess.run(
            [ACCESSDRIFT, "produce", "--broker", self.broker.bootstrap, str(path)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    def findings(self, expected: int, timeout_s: float = 30.0) -> list[dict[str, object]]:
        records = read_topic(self.broker.bootstrap, self.topic("findings"), expected, timeout_s)
        return [json.loads(value) for _, _, value, _ in records]


@pytest.fixture(scope="module", params=["memory", "rocksdb"])
def worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Worker]:
    """A worker per table store, on its own topics, policy with windows of seconds, grace 0."""
    home = tmp_path_factory.mktemp("worker")
    (home / "policy.toml").write_text(POLICY)
    env = worker_env(broker, uuid.uuid4().hex[:8], home / "policy.toml", 0, home / "data")
    env["ACCESSDRIFT_STORE"] = request.param
    process = WorkerProcess(env, home, "worker")
    try:
        process.wait_ready()
        yield Worker(broker, env, process.web_port)
    finally:
        process.stop()


def _at(offset_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def test_a_deadline_fires_live_with_no_new_events_and_resolves_on_revoke(
    worker: Worker, tmp_path: Path
) -> None:
    who = f"alice-{uuid.uuid4().hex[:6]}"
    worker.produce(
        tmp_path,
        {
            "topic": "identity.status",
            "value": {
                "event_id": "s1",
                "occurred_at": _at(-60),
                "identity_id": who,
                "status": "active",
            },
        },
        {
            "topic": "device.posture",
            "value": {
                "event_id": "d1",
                "occurred_at": _at(-59),
                "device_id": f"mac-{who}",
                "posture": "compliant",
                "identity_ids": [who],
            },
        },
        {
            "topic": "entitlement.change",
            "value": {
                "event_id": "g1",
                "occurred_at": _at(-58),
                "identity_id": who,
                "system": "github",
                "entitlement": "admin",
                "action": "granted",
                "privileged": True,
            },
        },
    )
    terminated_at = datetime.now(UTC)
    worker.produce(
        tmp_path,
        {
            "topic": "identity.status",
            "value": {
                "event_id": "s2",
                "occurred_at": _at(0),
                "identity_id": who,
                "status": "terminated",
            },
        },
    )

    opened = [r for r in worker.findings(expected=50, timeout_s=12) if r["identity_id"] == who]

    findings = [r for r in opened if r["record_type"] == "finding"]
    assert [(r["trigger"], r["status"], r["system"]) for r in findings] == [
        ("leaver", "open", "github")
    ]
    detected = datetime.fromisoformat(str(findings[0]["detected_at"]))
    deadline = datetime.fromisoformat(str(findings[0]["deadline"]))
    assert abs((deadline - terminated_at).total_seconds() - 3) < 1
    assert timedelta(0) < detected - deadline < timedelta(seconds=2)

    worker.produce(
        tmp_path,
        {
            "topic": "entitlement.change",
            "value": {
                "event_id": "r1",
                "occurred_at": _at(0),
                "identity_id": who,
                "system": "github",
                "entitlement": "admin",
                "action": "revoked",
            },
        },
    )
    time.sleep(3)
    records = [r for r in worker.findings(expected=80, timeout_s=8) if r["identity_id"] == who]
    statuses = [(r["record_type"], r.get("status")) for r in records]
    assert statuses.count(("finding", "open")) == 1
    assert statuses.count(("finding", "resolved")) == 1
    resolved = next(r for r in records if r.get("status") == "resolved")
    assert resolved["finding_id"] == findings[0]["finding_id"]
    evidence = [r for r in records if r["record_type"] == "offboarding"]
    assert evidence[-1]["entitlements"][0]["system"] == "github"


def test_poison_records_go_to_the_dead_letter_topic_and_the_worker_keeps_going(
    worker: Worker, tmp_path: Path
) -> None:
    topic = worker.topic("entitlement_change")
    first = send_raw(worker.broker.bootstrap, topic, key=b"mallory", value=b"{not json")
    second = send_raw(
        worker.broker.bootstrap,
        topic,
        key=b"mallory",
        value=json.dumps(
            {
                "event_id": "x",
                "occurred_at": "2026-01-05T09:00:00",
                "identity_id": "mallory",
                "system": "s",
                "entitlement": "e",
                "action": "granted",
            }
        ).encode(),
    )
    third = send_raw(
        worker.broker.bootstrap,
        topic,
        key=b"mallory",
        value=json.dumps(
            {
                "event_id": "typo",
                "occurred_at": _at(0).replace("20", "21", 1),
                "identity_id": "mallory",
                "system": "s",
                "entitlement": "e",
                "action": "granted",
            }
        ).encode(),
    )
    who = f"bob-{uuid.uuid4().hex[:6]}"
    worker.produce(
        tmp_path,
        {
            "topic": "identity.status",
            "value": {
                "event_id": "t1",
                "occurred_at": _at(-30),
                "identity_id": who,
                "status": "terminated",
            },
        },
        {
            "topic": "entitlement.change",
            "value": {
                "event_id": "g9",
                "occurred_at": _at(0),
                "identity_id": who,
                "system": "jira",
                "entitlement": "user",
                "action": "granted",
            },
        },
    )

    dead = read_topic(worker.broker.bootstrap, worker.topic("deadletter"), 3)
    headers = [dict(h) for _, _, _, h in dead]
    assert [h[HEADER_TOPIC] for h in headers] == [topic.encode()] * 3
    assert headers[0][HEADER_ERROR].startswith(b"not valid JSON")
    assert headers[1][HEADER_ERROR].startswith(b"occurred_at: timestamp has no UTC offset")
    assert headers[2][HEADER_ERROR].startswith(b"value.occurred_at: 21")
    assert b"ahead of wall time" in headers[2][HEADER_ERROR]
    assert [(int(h[HEADER_PARTITION]), int(h[HEADER_OFFSET])) for h in headers] == [
        first,
        second,
        third,
    ]
    metrics = urllib.request.urlopen(
        f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10
    ).read()
    assert f'accessdrift_deadletter_records_total{{topic="{topic}"}} 3.0'.encode() in metrics
    later = [r for r in worker.findings(expected=200, timeout_s=10) if r["identity_id"] == who]
    assert [r["trigger"] for r in later if r["record_type"] == "finding"] == [
        "grant_while_inactive"
    ]
