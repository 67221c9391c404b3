"""The simulator: reproducible, valid against the contract, with a ground truth the detector
agrees with, through replay and through a live worker on Kafka."""

from __future__ import annotations

import io
import json
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import msgspec

from accessdrift.models.clock import format_us, parse_us
from accessdrift.models.findings import Record, decode_record, record_key
from accessdrift.models.policy import Policy
from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.engine import Engine
from accessdrift.streams.ingest import ingest_group
from accessdrift.streams.replay import DEFAULT_LATENESS_S, replay
from accessdrift.streams.simulate import (
    LAG_US,
    SimulationSettings,
    compare,
    read_truth,
    write_simulation,
)
from tests.kafka import create_topics, produce_events, read_topic, wait_consumed
from tests.scenarios import ListSink
from tests.workers import ACCESSDRIFT, WorkerProcess, worker_env

#: Both detectors wait this long after a deadline, longer than any source's lag, so that in
#: Kafka, where topics interleave as they are read, every landing is in before its deadline fires.
GRACE_S = 3600


def _simulate(identities: int, seed: int) -> tuple[str, str, SimulationSettings]:
    settings = SimulationSettings(identities, seed)
    events, truth = io.StringIO(), io.StringIO()
    write_simulation(settings, events, truth)
    return events.getvalue(), truth.getvalue(), settings


def _replayed(events: str, settings: SimulationSettings, grace_s: float = 0) -> list[Record]:
    sink = ListSink()
    summary = replay(
        [("simulated", io.BytesIO(events.encode()))],
        Engine(Policy(), grace_s=grace_s),
        sink,
        sink,
        errors=io.StringIO(),
        until_us=settings.until_us,
        lateness_s=DEFAULT_LATENESS_S,
    )
    assert summary.rejected == 0
    assert summary.late == 0
    return sink.records


def test_the_same_seed_gives_the_same_history_and_another_seed_another() -> None:
    first = _simulate(300, 4)
    assert _simulate(300, 4)[:2] == first[:2]
    assert _simulate(300, 5)[0] != first[0]


def test_the_history_keeps_the_contract_and_arrives_within_each_source_s_lag() -> None:
    events, _, _ = _simulate(500, 2)
    lines = [json.loads(line) for line in events.splitlines()]
    latest_us = 0
    streams: Counter[str] = Counter()
    for line in lines:
        at_us = parse_us(line["value"]["occurred_at"])
        streams[line["topic"]] += 1
        # In arrival order: no event arrives more than its source's lag after a later one.
        assert at_us >= latest_us - max(LAG_US.values())
        latest_us = max(latest_us, at_us)
    assert set(streams) == {"identity.status", "device.posture", "entitlement.change",
                            "access.exception"}  # fmt: skip
    result = subprocess.run(
        [ACCESSDRIFT, "replay", "-"], input=events, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_replay_agrees_with_the_ground_truth_on_a_few_thousand_identities() -> None:
    events, truth_text, settings = _simulate(3000, 8)
    truth, evidence = read_truth(truth_text.splitlines())
    agreement = compare(truth, evidence, _replayed(events, settings))

    assert agreement.agrees, agreement.describe()
    expected = Counter((t.trigger, t.expect) for t in truth)
    for trigger in ("leaver", "suspension", "mover", "device_untrusted", "owner_departed",
                    "joiner"):  # fmt: skip
        for expect in ("on_time", "late", "open"):
            assert expected[(trigger, expect)] > 0, (trigger, expect)
    cases = Counter(t.case for t in truth)
    for case in ("just_inside", "never", "late", "exception_covers", "exception_expired",
                 "provisioned_after_termination", "compliant_again_on_time",
                 "kiosk_compliant_again_on_time"):  # fmt: skip
        assert cases[case] > 0, case
    assert evidence


def test_the_comparison_catches_a_missed_and_a_false_finding() -> None:
    events, truth_text, settings = _simulate(400, 3)
    truth, evidence = read_truth(truth_text.splitlines())
    records = _replayed(events, settings)
    opened = next(r for r in records if getattr(r, "status", None) == "open")
    missing = [r for r in records if r is not opened]
    forged = [*records, msgspec.structs.replace(opened, identity_id="nobody")]

    assert compare(truth, evidence, records).agrees
    assert len(compare(truth, evidence, missing).missed_open) == 1
    assert compare(truth, evidence, forged).false_open == [
        (opened.trigger, "nobody", opened.system, opened.entitlement)
    ]


def test_simulate_replay_verify_on_the_command_line(tmp_path: Path) -> None:
    history, truth = tmp_path / "history.jsonl", tmp_path / "truth.jsonl"
    made = subprocess.run(
        [ACCESSDRIFT, "simulate", "--identities", "800", "--seed", "9", "--out", str(history),
         "--truth", str(truth)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    until = made.stderr.rsplit("--until ", 1)[1].strip()
    records = tmp_path / "records.jsonl"
    with records.open("w") as out:
        subprocess.run(
            [ACCESSDRIFT, "replay", "--until", until, "--evidence", "-", str(history)],
            stdout=out, stderr=subprocess.PIPE, check=True,
        )  # fmt: skip
    verified = subprocess.run(
        [ACCESSDRIFT, "verify", "--truth", str(truth), str(records)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("agrees with the truth:")

    lines = records.read_text().splitlines()
    records.write_text("\n".join(line for line in lines if '"status":"open"' not in line))
    failed = subprocess.run(
        [ACCESSDRIFT, "verify", "--truth", str(truth), str(records)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "missed open" in failed.stdout


def test_a_live_worker_agrees_with_the_ground_truth(broker: EmbeddedBroker, tmp_path: Path) -> None:
    events, truth_text, settings = _simulate(1000, 12)
    truth, evidence = read_truth(truth_text.splitlines())
    assert compare(truth, evidence, _replayed(events, settings, GRACE_S)).agrees

    (tmp_path / "policy.toml").write_text("")
    env = worker_env(broker, uuid.uuid4().hex[:8], tmp_path / "policy.toml", GRACE_S, tmp_path)
    env["ACCESSDRIFT_CLOCK"] = "event"
    topics = {
        stream: env[f"ACCESSDRIFT_TOPIC_{stream.replace('.', '_').upper()}"]
        for stream in ("identity.status", "device.posture", "entitlement.change",
                       "access.exception")
    }  # fmt: skip
    create_topics(broker.bootstrap, list(topics.values()))
    worker = WorkerProcess(env, tmp_path, "worker")
    try:
        worker.wait_ready()
        lines = [json.loads(line) for line in events.splitlines()]
        produce_events(broker.bootstrap, topics, lines)
        wait_consumed(
            broker.bootstrap, ingest_group(env["ACCESSDRIFT_APP_ID"]), list(topics.values()), 300
        )
        # Move the event clock past every deadline of the history.
        clock = {"topic": "device.posture", "value": {
            "event_id": "clock", "occurred_at": format_us(settings.until_us + GRACE_S * 10**6),
            "device_id": "clock", "posture": "enrolled", "identity_ids": ["clock"]}}  # fmt: skip
        produce_events(broker.bootstrap, topics, [clock])
        want = (
            sum(1 for t in truth if t.expect != "on_time")
            + sum(1 for t in truth if t.expect == "late")
            + len(evidence)
        )
        deadline = time.monotonic() + 180
        records: list[Record] = []
        while time.monotonic() < deadline and len(records) < want:
            raw = read_topic(broker.bootstrap, env["ACCESSDRIFT_TOPIC_FINDINGS"], want, 5)
            records = [decode_record(value) for _, _, value, _ in raw]
    finally:
        worker.stop()

    agreement = compare(truth, evidence, records)
    assert agreement.agrees, agreement.describe()
    published = Counter(record_key(r) for r in records)
    assert max(published.values()) == 1, "nothing published twice"
