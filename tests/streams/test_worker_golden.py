"""The golden scenarios sent through Kafka to a real worker produce the findings replay does.

The worker runs with the event-time clock (as replay does), so history can be sent at full
speed. Each scenario gets its own identities and device ids (a prefix) and its own stretch of
time (scenario k of n is moved (n - k) * 90 days earlier, so time runs forward from one to the
next and stays in the past: the worker's clock never passes wall time), so one worker runs them
all in sequence; a last
event for an otherwise unknown identity moves the clock to the scenario's end. Both sides run
with the same grace (30 days, longer than any scenario), so that however Kafka interleaves the
topics, every event of a scenario is in before any of its deadlines can fire.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from accessdrift.models.clock import US_PER_S, format_us, parse_us
from accessdrift.models.findings import FindingRecord
from accessdrift.models.policy import Policy
from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.engine import Engine
from accessdrift.streams.ingest import ingest_group
from accessdrift.streams.replay import replay
from tests.kafka import read_topic, wait_consumed
from tests.scenarios import ListSink, Scenario, load_scenarios
from tests.workers import WorkerProcess, worker_env

GRACE_S = 30 * 86_400
SHIFT_US = 90 * 86_400 * US_PER_S
SCENARIOS = len(load_scenarios())
RUN_US = 85 * 86_400 * US_PER_S
PREFIXED = ("identity_id", "owner_id", "device_id", "event_id")


def _transform(scenario_number: int, value: dict[str, Any]) -> dict[str, Any]:
    prefix = f"k{scenario_number}-"
    out = dict(value)
    for name in PREFIXED:
        if out.get(name) is not None:
            out[name] = prefix + out[name]
    if "identity_ids" in out:
        out["identity_ids"] = [prefix + i for i in out["identity_ids"]]
    for name in ("occurred_at", "expires_at"):
        if name in out:
            out[name] = format_us(parse_us(out[name]) - (SCENARIOS - scenario_number) * SHIFT_US)
    return out


def _lines(number: int, scenario: Scenario) -> tuple[list[dict[str, Any]], int]:
    """The scenario's events, moved, and the time its clock must reach.

    The worker's clock is shared by every scenario and the next one moves it on, so whatever a
    scenario leaves pending fires there eventually; both sides therefore run each scenario's
    clock far past its end (85 days after its first event, before the next one starts).
    """
    events = []
    for line in scenario.lines:
        data = json.loads(line)
        events.append({"topic": data["topic"], "value": _transform(number, data["value"])})
    first = min(parse_us(e["value"]["occurred_at"]) for e in events)
    return events, first + RUN_US


def _replayed(events: list[dict[str, Any]], until_us: int) -> set[tuple[str, str, str]]:
    sink = ListSink()
    data = "".join(json.dumps(e) + "\n" for e in events).encode()
    replay(
        [("s", io.BytesIO(data))],
        Engine(Policy(), grace_s=GRACE_S),
        sink,
        ListSink(),
        errors=io.StringIO(),
        until_us=until_us,
    )
    return {(r.finding_id, r.kind, r.status) for r in sink.records if isinstance(r, FindingRecord)}


async def _send(bootstrap: str, topics: dict[str, str], events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for event in events:
            value = event["value"]
            key = value["device_id"] if event["topic"] == "device.posture" else value["identity_id"]
            await producer.send_and_wait(
                topics[event["topic"]], msgspec.json.encode(value), key=key.encode()
            )
    finally:
        await producer.stop()


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 4, 1) for name in names])
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def event_time_worker(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("golden-worker")
    (home / "policy.toml").write_text("")
    env = worker_env(broker, uuid.uuid4().hex[:8], home / "policy.toml", GRACE_S, home / "data")
    env["ACCESSDRIFT_CLOCK"] = "event"
    # Scenarios lie 90 days apart (plus the spread of dates within a file): allow that gap.
    env["ACCESSDRIFT_MAX_AHEAD_S"] = str(365 * 86_400)
    # Topics exist before the worker subscribes, so no stream waits for a metadata refresh.
    asyncio.run(_create_topics(broker.bootstrap, [v for k, v in env.items() if "_TOPIC_" in k]))
    worker = WorkerProcess(env, home, "worker")
    try:
        worker.wait_ready()
        yield env
    finally:
        worker.stop()


def test_golden_scenarios_through_kafka_match_replay(
    broker: EmbeddedBroker, event_time_worker: dict[str, str]
) -> None:
    env = event_time_worker
    topics = {
        stream: env[f"ACCESSDRIFT_TOPIC_{stream.replace('.', '_').upper()}"]
        for stream in (
            "identity.status",
            "device.posture",
            "entitlement.change",
            "access.exception",
        )
    }
    expected: dict[str, set[tuple[str, str, str]]] = {}
    total = 0
    for number, scenario in enumerate(load_scenarios(), start=1):
        events, until_us = _lines(number, scenario)
        expected[f"k{number}-"] = _replayed(events, until_us)
        total += len(expected[f"k{number}-"])
        asyncio.run(_send(broker.bootstrap, topics, events))
        # Not needed for correctness (the clock waits for every channel, the device hop
        # included), but it keeps each scenario's events ahead of its clock event in every
        # partition, as the replay has them.
        wait_consumed(
            broker.bootstrap, ingest_group(env["ACCESSDRIFT_APP_ID"]), list(topics.values())
        )
        clock = {
            "topic": "device.posture",
            "value": {
                "event_id": f"k{number}-clock",
                "occurred_at": format_us(until_us),
                "device_id": f"k{number}-clock",
                "posture": "enrolled",
                "identity_ids": [f"k{number}-clock"],
            },
        }
        asyncio.run(_send(broker.bootstrap, topics, [clock]))

    wanted = set().union(*expected.values())
    deadline = time.monotonic() + 90
    findings: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        raw = read_topic(broker.bootstrap, env["ACCESSDRIFT_TOPIC_FINDINGS"], 100_000, 2)
        published = [json.loads(v) for _, _, v, _ in raw]
        findings = [r for r in published if r["record_type"] == "finding"]
        if {(r["finding_id"], r["kind"], r["status"]) for r in findings} >= wanted:
            break
    keys = [(r["finding_id"], r["status"]) for r in findings]
    assert len(keys) == len(set(keys)), "a finding status was published twice"
    by_scenario: dict[str, set[tuple[str, str, str]]] = {prefix: set() for prefix in expected}
    for r in findings:
        prefix = r["identity_id"].split("-", 1)[0] + "-"
        by_scenario[prefix].add((r["finding_id"], r["kind"], r["status"]))
    assert total > 40
    names = {f"k{n}-": s.id for n, s in enumerate(load_scenarios(), start=1)}
    differing = {
        names[p]: (sorted(by_scenario[p] - expected[p]), sorted(expected[p] - by_scenario[p]))
        for p in expected
        if by_scenario[p] != expected[p]
    }
    assert differing == {}
