"""A simulated organisation driven through real worker processes under faults, and the verdict
against the simulator's ground truth (what it injected, not what any engine made of it).

Short forms run in `make test`; `make soak` sets ACCESSDRIFT_SOAK=1 for the full lengths.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from accessdrift.models.clock import format_us
from accessdrift.models.findings import Record, decode_record, record_key
from accessdrift.streams.inbox import Partitioner
from accessdrift.streams.ingest import ingest_group
from accessdrift.streams.poison import RawRecord, record_of
from accessdrift.streams.simulate import (
    Agreement,
    SimulationSettings,
    Truth,
    compare,
    read_truth,
    write_simulation,
)
from accessdrift.streams.store import Stored
from tests.kafka import (
    behind,
    create_topics,
    produce_events,
    produce_raw,
    read_topic,
    wait_consumed,
)
from tests.workers import STREAM_TOPICS, WorkerProcess, worker_env

SOAK = os.environ.get("ACCESSDRIFT_SOAK") == "1"
#: Longer than any simulated source's lag (see tests/streams/test_simulate.py).
GRACE_S = 3600
STREAMS = ("identity.status", "device.posture", "entitlement.change", "access.exception")


def soak(short: float, full: float) -> float:
    """`full` under `make soak`, `short` in `make test`."""
    return full if SOAK else short


@dataclass
class Organisation:
    events: list[dict[str, Any]]
    truth: list[Truth]
    evidence: Any
    settings: SimulationSettings

    @property
    def expected_records(self) -> int:
        """Records a correct worker publishes: an open per finding, a resolve per late landing,
        and the offboarding evidence."""
        truth = self.truth
        return (
            sum(1 for t in truth if t.expect != "on_time")
            + sum(1 for t in truth if t.expect == "late")
            + len(self.evidence)
        )

    def clock_event(self) -> dict[str, Any]:
        """An event dated past every deadline of the history: moves the event clock there."""
        at = format_us(self.settings.until_us + GRACE_S * 10**6)
        return {"topic": "device.posture", "value": {
            "event_id": f"clock-{uuid.uuid4().hex[:6]}", "occurred_at": at, "device_id": "clock",
            "posture": "enrolled", "identity_ids": ["clock"]}}  # fmt: skip


def organisation(identities: int, seed: int) -> Organisation:
    settings = SimulationSettings(identities, seed)
    events, truth = io.StringIO(), io.StringIO()
    write_simulation(settings, events, truth)
    obligations, evidence = read_truth(truth.getvalue().splitlines())
    lines = [json.loads(line) for line in events.getvalue().splitlines()]
    return Organisation(lines, obligations, evidence, settings)


@dataclass
class Verdict:
    agreement: Agreement
    records: list[Record]
    #: (finding_id, status) → how many times it was published, for those published more than once.
    repeats: dict[str, int]
    #: Whether every repeat is byte for byte the record first published (the outbox window
    #: publishes the stored record again; anything else would be a second detection).
    repeats_identical: bool

    def describe(self) -> str:
        extra = sum(n - 1 for n in self.repeats.values())
        return (
            f"{len(self.records)} records, {extra} repeats of {len(self.repeats)} records; "
            + self.agreement.describe()
        )


@dataclass
class Rig:
    """Workers of one app on topics of their own, on a broker reached at `bootstrap`."""

    broker: Any
    home: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    bootstrap: str = ""
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.bootstrap = self.bootstrap or self.broker.bootstrap
        policy = self.home / "policy.toml"
        policy.write_text("")
        self.run = uuid.uuid4().hex[:8]
        self.env = worker_env(self.broker, self.run, policy, GRACE_S, self.home / "data")
        self.env.update(ACCESSDRIFT_CLOCK="event", ACCESSDRIFT_BROKER=self.bootstrap)
        self.env.update(self.extra_env)
        self.topics = {
            stream: self.env[f"ACCESSDRIFT_TOPIC_{name.upper()}"]
            for stream, name in zip(STREAMS, STREAM_TOPICS, strict=True)
        }
        self.findings_topic = self.env["ACCESSDRIFT_TOPIC_FINDINGS"]
        create_topics(self.bootstrap, [*self.topics.values(), self.findings_topic])
        self.started = 0

    def start(self, wait: bool = True) -> WorkerProcess:
        self.started += 1
        worker = WorkerProcess(self.env, self.home, f"worker-{self.started}")
        self.workers.append(worker)
        if wait:
            worker.wait_ready(120)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def produce(self, events: list[dict[str, Any]]) -> None:
        produce_events(self.bootstrap, self.topics, events)

    def produce_raw(self, records: list[RawRecord]) -> None:
        produce_raw(self.bootstrap, self.topics, records)

    def feed(
        self, events: list[dict[str, Any]] | list[RawRecord], duration_s: float
    ) -> threading.Thread:
        """Produce `events` (replay format, or records as given) in order, spread over about
        `duration_s`, in the background."""
        records = [e if isinstance(e, RawRecord) else record_of(e) for e in events]
        chunks = max(1, int(duration_s * 2))
        size = -(-len(records) // chunks)

        def go() -> None:
            for start in range(0, len(records), size):
                began = time.monotonic()
                self.produce_raw(records[start : start + size])
                time.sleep(max(0.0, 0.5 - (time.monotonic() - began)))

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        return thread

    @property
    def inboxes(self) -> list[str]:
        """The workers' inbox topics, read by their own group (named as the app)."""
        app_id = self.env["ACCESSDRIFT_APP_ID"]
        return [f"{app_id}.identity-inbox", f"{app_id}.device-inbox"]

    def consumed(self, timeout_s: float = 300) -> None:
        group = ingest_group(self.env["ACCESSDRIFT_APP_ID"])
        wait_consumed(self.bootstrap, group, list(self.topics.values()), timeout_s)

    def inboxes_committed(self, timeout_s: float = 60) -> None:
        """The workers' own group commits everything its inboxes hold now: the commit does not
        stall behind a message it waits for (streams/acks.py's rule for the committed offset)."""
        app_id = self.env["ACCESSDRIFT_APP_ID"]
        wait_consumed(self.bootstrap, app_id, self.inboxes, timeout_s, moving=True)

    def reset_input_offsets(self) -> None:
        """Every input partition's committed offset back to zero (no worker may be running)."""

        async def go() -> None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                group_id=ingest_group(self.env["ACCESSDRIFT_APP_ID"]),
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                partitions = [
                    TopicPartition(topic, partition)
                    for topic in self.topics.values()
                    for partition in consumer.partitions_for_topic(topic) or ()
                ]
                consumer.assign(partitions)
                await consumer.commit(dict.fromkeys(partitions, 0))
            finally:
                await consumer.stop()

        asyncio.run(go())

    def records(self, want: int, timeout_s: float) -> list[Record]:
        """The findings topic from its start, once it holds `want` records (or the time is up,
        then a few seconds more to catch anything published beyond `want`)."""
        self.published(want, timeout_s)
        raw = read_topic(self.bootstrap, self.findings_topic, 10**9, 5)
        return [decode_record(value) for _, _, value, _ in raw]

    def published(self, want: int, timeout_s: float) -> bool:
        """Whether the findings topic holds `want` records within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        held = 0
        while time.monotonic() < deadline and held < want:
            held = len(read_topic(self.bootstrap, self.findings_topic, want, 5))
        return held >= want

    def raw_records(self) -> list[bytes]:
        return [
            value for _, _, value, _ in read_topic(self.bootstrap, self.findings_topic, 10**9, 5)
        ]

    def trail(self, identity_ids: set[str]) -> str:
        """Every version of these identities' states in the identities table's changelog, one
        line each: what a failed fault test prints to show where a finding went missing (a state
        rolled back, a message that never arrived)."""
        changelog = f"{self.env['ACCESSDRIFT_APP_ID']}-identities-changelog"
        lines = []
        for partition, key, value, _ in read_topic(self.bootstrap, changelog, 10**9, 5):
            if key is None or key.decode() not in identity_ids or value is None:
                continue
            stored = msgspec.msgpack.decode(value, type=Stored)
            s = stored.state
            owned = ",".join(f"{k}{'+' if v.linked else '-'}" for k, v in sorted(s.owned.items()))
            obligations = ",".join(
                f"{ob.trigger}:{ob.state}" for ob in (*s.obligations.values(), *s.settled.values())
            )
            lines.append(
                f"[{partition}] {s.identity_id} status={s.status} owner={s.owner_id} "
                f"heard={s.owner_heard} timeline={[t[1] for t in s.owner_timeline]} "
                f"owned=[{owned}] obligations=[{obligations}] outbox={len(stored.outbox)} "
                f"transitions={len(s.transitions)}"
            )
        return "\n".join(lines)

    def misplaced(self) -> list[tuple[int, str]]:
        """(changelog partition, identity) of every identities-table record written to another
        changelog partition than its key's: a later recovery would read it over newer state."""
        changelog = f"{self.env['ACCESSDRIFT_APP_ID']}-identities-changelog"
        partition_of = Partitioner(int(self.env["ACCESSDRIFT_PARTITIONS"]))
        return [
            (partition, key.decode())
            for partition, key, _, _ in read_topic(self.bootstrap, changelog, 10**9, 5)
            if key is not None and partition_of(key) != partition
        ]

    def explain(self, organisation: Organisation, agreement: Agreement) -> str:
        """The disagreement, and the trail of the first identities it names and their owners."""
        named: set[str] = set()
        for name in ("missed_open", "false_open", "missed_resolved", "false_resolved"):
            named.update(str(key[1]) for key in getattr(agreement, name)[:2])
        named.update(str(key[0]) for key in agreement.evidence_wrong[:2])
        for event in organisation.events:
            value = event["value"]
            topic, identity_id = event["topic"], value.get("identity_id")
            if topic == "identity.status" and identity_id in named and value.get("owner_id"):
                named.add(value["owner_id"])
        return f"{agreement.describe()}\n{self.trail(named)}\n{self.positions()}"

    def positions(self) -> str:
        """Where each group's commits stand against the ends of the topics it reads: a partition
        far behind is one read no further (a stall), not a message lost on its way."""
        app_id = self.env["ACCESSDRIFT_APP_ID"]
        ingest = behind(self.bootstrap, ingest_group(app_id), list(self.topics.values()))
        inbox = behind(self.bootstrap, app_id, self.inboxes)
        return f"ingest behind: {ingest or 'none'}\ninboxes behind: {inbox or 'none'}"

    def verdict(self, organisation: Organisation, records: list[Record]) -> Verdict:
        raw = self.raw_records()
        first: dict[str, bytes] = {}
        identical = True
        for value in raw:
            key = record_key(decode_record(value))
            if first.setdefault(key, value) != value:
                identical = False
        counts = Counter(record_key(r) for r in records)
        agreement = compare(organisation.truth, organisation.evidence, records)
        repeats = {key: n for key, n in counts.items() if n > 1}
        return Verdict(agreement, records, repeats, identical)


def every(interval: Callable[[], float], action: Callable[[], None], until_s: float) -> int:
    """Call `action` after each `interval()` seconds until `until_s` seconds have passed; the
    number of calls."""
    deadline = time.monotonic() + until_s
    calls = 0
    while (wait := interval()) < deadline - time.monotonic():
        time.sleep(wait)
        action()
        calls += 1
    time.sleep(max(0.0, deadline - time.monotonic()))
    return calls
