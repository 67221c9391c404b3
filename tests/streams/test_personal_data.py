"""Findings and logs carry identifiers, not personal data the detector does not need.

The demo's example history goes through a real worker and `accessdrift notify` into a Splunk
HEC and a PagerDuty stand-in, with personal data where real sources put it: names and e-mail
addresses in an exception's free text and approver, and a record from a source that sends whole
profiles (which breaks the contract and is dead-lettered). None of it may appear in the worker's
or the delivery service's logs, on the findings topic, or in any request a sink receives; the
dead-letter topic keeps the broken record as it came (its place), so the test would see a leak.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.alerts.standins import Answer, StandIn
from tests.kafka import create_topics, produce_events, read_topic, wait_consumed
from tests.workers import ACCESSDRIFT, STREAM_TOPICS, WorkerProcess, worker_env

DEMO = Path(__file__).parents[2] / "deploy" / "demo" / "events.jsonl"
STREAMS = ("identity.status", "device.posture", "entitlement.change", "access.exception")
#: What the sources below carry that the detector does not need.
PERSONAL = ("Ivan Petrov", "ivan.petrov@example.com", "Jane Doe", "jane.doe@example.com",
            "Alice Smith", "alice.smith@example.com", "+44 20 7946 0018")  # fmt: skip


def _history() -> list[dict[str, Any]]:
    events = [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]
    for event in events:
        value = event["value"]
        if event["topic"] == "access.exception":
            value["reason"] = "hand over to Ivan Petrov <ivan.petrov@example.com>"
            value["approved_by"] = "Jane Doe <jane.doe@example.com>"
    # An HR feed that sends the whole profile: extra fields break the contract.
    events.append({"topic": "identity.status", "value": {
        "event_id": "hr-profile-1", "occurred_at": "2026-03-09T09:00:00Z", "identity_id": "alice",
        "status": "active", "display_name": "Alice Smith", "email": "alice.smith@example.com",
        "phone": "+44 20 7946 0018"}})  # fmt: skip
    # A status that is an e-mail address: the error must not quote it in the log.
    events.append({"topic": "identity.status", "value": {
        "event_id": "hr-profile-2", "occurred_at": "2026-03-09T09:00:00Z", "identity_id": "bob",
        "status": "alice.smith@example.com"}})  # fmt: skip
    return events


def test_no_personal_data_reaches_logs_findings_or_sinks(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    run = "pii"
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    env = worker_env(broker, f"{run}-{free_port()}", policy, 1, tmp_path / "data")
    topics = {
        stream: env[f"ACCESSDRIFT_TOPIC_{name.upper()}"]
        for stream, name in zip(STREAMS, STREAM_TOPICS, strict=True)
    }
    findings, deadletter = env["ACCESSDRIFT_TOPIC_FINDINGS"], env["ACCESSDRIFT_TOPIC_DEADLETTER"]
    create_topics(broker.bootstrap, [*topics.values(), findings, deadletter])
    worker = WorkerProcess(env, tmp_path, "worker")
    try:
        worker.wait_ready()
        produce_events(broker.bootstrap, topics, _history())
        dead = read_topic(broker.bootstrap, deadletter, 2, timeout_s=60)
        published = read_topic(broker.bootstrap, findings, 10_000, timeout_s=10)
    finally:
        worker.stop()
    assert len(dead) == 2
    assert published, "the history has findings"

    group = f"{env['ACCESSDRIFT_APP_ID']}.notify"
    config = tmp_path / "notify.toml"
    with StandIn() as hec, StandIn(lambda s, i: Answer(202, {"status": "success"})) as pd:
        config.write_text(
            f'group_prefix = "{group}"\nlinger = "0s"\n'
            f'[[sink]]\nname = "siem"\ntype = "splunk_hec"\nurl = "{hec.url}"\n'
            'token = { env = "HEC_TOKEN" }\nformat = "ocsf"\n'
            f'[[sink]]\nname = "oncall"\ntype = "pagerduty"\nurl = "{pd.url}/v2/enqueue"\n'
            'routing_key = { env = "PD_KEY" }\nmin_severity = "low"\n'
        )
        notify_log = tmp_path / "notify.log"
        with notify_log.open("wb") as log:
            notify = subprocess.Popen(
                [ACCESSDRIFT, "notify", "--config", str(config), "--web-port", str(free_port())],
                env={**env, "HEC_TOKEN": "hec-token-1", "PD_KEY": "pd-key-1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            for sink in ("siem", "oncall"):
                wait_consumed(broker.bootstrap, f"{group}.{sink}", [findings], 60)
        finally:
            notify.terminate()
            notify.wait(30)
        requests = [seen.body for seen in (*hec.seen, *pd.seen)]
    assert hec.seen, "the SIEM received the findings"
    assert pd.seen, "the pager was paged"

    places = {
        "the worker's log": worker.log.read_bytes(),
        "the delivery service's log": notify_log.read_bytes(),
        "the findings topic": b"\n".join(value for _, _, value, _ in published),
        "a sink request": b"\n".join(requests),
    }
    leaks = [(where, text) for where, data in places.items() for text in PERSONAL
             if text.encode() in data]  # fmt: skip
    assert leaks == []
    # The broken records are kept whole where they are meant to be, for whoever fixes the source.
    kept = b"\n".join(value for _, _, value, _ in dead)
    assert b"alice.smith@example.com" in kept
    assert b"Alice Smith" in kept
