"""The live runtime: the engine on Kafka with faust-streaming (aiokafka transport).

Shape of the pipeline, every arrow a Kafka topic:

    identity.status ┐
    entitlement.change ├─ ingest (validate) ─► <app>.identity-inbox ─► identities agent ─► findings
    access.exception ┘                              ▲          │ (table: identities)
    device.posture ─ ingest ─► <app>.device-inbox ─► devices agent (table: devices)
                                                    └── DeviceSignal / OwnerLink / OwnerSignal
    a record that breaks the contract ─────────────────────────────────────────────► deadletter

The ingest agents only validate and forward, keyed by identity or device, to internal topics
this app owns; the agents that own a table read only those, so every table write happens inside
stream iteration and lands on the changelog partition of the key (co-partitioning holds whatever
the input topics' partition counts). Deadlines fire on ticks: the leader sends a tick to every
partition of the identity inbox each `tick_interval_s`, and the identities agent fires what is due
for that partition, so the state change still happens inside the stream.

Processing is at-least-once (faust's exactly-once mode has open problems). What a step decides
to publish is written to the identity's table entry together with its new state (an outbox)
and made durable before it is published, then cleared once Kafka acknowledges it. So a crash
loses no finding: the restored state says what was decided, the outbox says what may not have
gone out, and a message redelivered after the crash is recognised by the engine as a repeat and
decides nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Final, Literal

import faust
import msgspec
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from accessdrift.models.errors import ContractError
from accessdrift.models.events import (
    ACCESS_EXCEPTION,
    DEVICE_POSTURE,
    ENTITLEMENT_CHANGE,
    IDENTITY_STATUS,
    decode_event,
)
from accessdrift.models.findings import encode_record
from accessdrift.models.messages import DevicePosture, IdentityMessage
from accessdrift.models.policy import Policy
from accessdrift.models.state import IdentityState, decode_device_state, encode_state
from accessdrift.streams.deadlines import DeadlineIndex
from accessdrift.streams.devices import route_device
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.settings import Topics

log = logging.getLogger(__name__)

#: Header names on dead-lettered records.
HEADER_ERROR: Final = "accessdrift-error"
HEADER_TOPIC: Final = "accessdrift-topic"
HEADER_PARTITION: Final = "accessdrift-partition"
HEADER_OFFSET: Final = "accessdrift-offset"


class Tick(msgspec.Struct, frozen=True, tag=True):
    """Time passes: fire what is due in the partition this tick arrived on."""


_FINDING: Final = 0
_MESSAGE: Final = 1


class Outgoing(msgspec.Struct, array_like=True, gc=False):
    """A record waiting to be published: a finding or offboarding record (to the findings topic),
    or a message for another identity (to the identity inbox)."""

    kind: int
    key: bytes
    value: bytes


class Stored(msgspec.Struct, array_like=True, gc=False):
    """A value of the identities table: the engine's state and what it has yet to publish.

    Both go to the changelog in one write, so what a step decided to publish can't be lost
    separately from the state that remembers it was decided.
    """

    state: IdentityState
    outbox: list[Outgoing]


_INBOX_ENCODER: Final = msgspec.msgpack.Encoder()
_INBOX_DECODER: Final = msgspec.msgpack.Decoder(IdentityMessage | Tick)
_DEVICE_DECODER: Final = msgspec.msgpack.Decoder(DevicePosture)
_TICK: Final = _INBOX_ENCODER.encode(Tick())
_STORED_ENCODER: Final = msgspec.msgpack.Encoder()
_STORED_DECODER: Final = msgspec.msgpack.Decoder(Stored)
_RAW: Final[dict[str, Any]] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}


class WorkerSettings(BaseModel):
    """Everything a worker needs; see `accessdrift worker --help` for the flags and variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_id: str = Field(default="accessdrift", min_length=1)
    broker: str = Field(min_length=1)
    topics: Topics = Topics()
    partitions: int = Field(default=8, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    store: str = "memory://"
    data_dir: Path = Path(".accessdrift")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    grace_s: float = Field(default=60.0, ge=0)
    tick_interval_s: float = Field(default=0.5, gt=0)
    #: `wall`: deadlines fire as real time passes (live use). `event`: the clock is the latest
    #: event time this worker has seen, as in replay (backfills of history through Kafka).
    clock: Literal["wall", "event"] = "wall"
    session_timeout_s: float = Field(default=30.0, gt=0)


class _Deadlines:
    """Which identities need the clock, per partition of the identity inbox.

    Rebuilt from the table for a partition the first time it ticks after an assignment, since
    the table (restored from its changelog) is the truth and this index is only a cache of it.
    """

    def __init__(self, engine: Engine, partitions: int) -> None:
        self._engine = engine
        self._partitions = list(range(partitions))
        self._partitioner = DefaultPartitioner()
        self._by_partition: dict[int, DeadlineIndex] = {}

    def partition_of(self, key: bytes) -> int:
        partition: int = self._partitioner(key, self._partitions, self._partitions)
        return partition

    def set(self, partition: int, identity_id: str, wake_us: int | None) -> None:
        index = self._by_partition.get(partition)
        if index is not None:
            index.set(identity_id, wake_us)

    def due(self, partition: int, now_us: int, table: Any) -> tuple[list[str], list[str]]:
        """The identities of `partition` whose deadlines passed, and — the first time the
        partition ticks after an assignment — those whose outbox was left unpublished."""
        undelivered: list[str] = []
        index = self._by_partition.get(partition)
        if index is None:
            index = self._by_partition[partition] = DeadlineIndex()
            for key, value in table.items():
                if self.partition_of(key) == partition:
                    stored = _STORED_DECODER.decode(value)
                    index.set(stored.state.identity_id, self._engine.wake_us(stored.state))
                    if stored.outbox:
                        undelivered.append(stored.state.identity_id)
        return index.pop_due(now_us), undelivered

    def forget(self) -> None:
        self._by_partition.clear()


class _Clock:
    """The worker's notion of now: wall time, or the latest event time seen (never backwards)."""

    def __init__(self, mode: Literal["wall", "event"]) -> None:
        self._event_time = mode == "event"
        self._latest_us = 0

    def now_us(self, occurred_at_us: int | None) -> int:
        if not self._event_time:
            return time.time_ns() // 1000
        if occurred_at_us is not None and occurred_at_us > self._latest_us:
            self._latest_us = occurred_at_us
        return self._latest_us


def build_app(settings: WorkerSettings, policy: Policy, registry: CollectorRegistry) -> faust.App:
    """The faust application for these settings and this policy (not started).

    Its metrics live in `registry` and are served as Prometheus text at `/metrics` on the
    worker's web port.
    """
    engine = Engine(policy, grace_s=settings.grace_s)
    deadlettered = Counter(
        "accessdrift_deadletter_records",
        "Input records sent to the dead-letter topic, by the topic they came from.",
        ["topic"],
        registry=registry,
    )
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 10),
        producer_linger=0.0,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )
    topics = settings.topics
    identity_inbox = app.topic(f"{settings.app_id}.identity-inbox", internal=True, **_RAW)
    device_inbox = app.topic(f"{settings.app_id}.device-inbox", internal=True, **_RAW)
    findings = app.topic(topics.findings, **_RAW)
    deadletter = app.topic(topics.deadletter, **_RAW)
    identities = app.Table("identities", key_type=bytes, value_type=bytes)
    devices = app.Table("devices", key_type=bytes, value_type=bytes)
    deadlines = _Deadlines(engine, settings.partitions)

    async def dead_letter(event: Any, reason: str) -> None:
        message = event.message
        log.warning(
            "dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
        )
        deadlettered.labels(topic=message.topic).inc()
        await deadletter.send(
            key=event.key,
            value=event.value,
            headers={
                HEADER_ERROR: reason.encode(),
                HEADER_TOPIC: message.topic.encode(),
                HEADER_PARTITION: str(message.partition).encode(),
                HEADER_OFFSET: str(message.offset).encode(),
            },
        )

    def ingest(stream_name: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
        async def validate_and_forward(stream: Any) -> None:
            async for event in stream.events():
                try:
                    message = decode_event(stream_name, event.value).to_message()
                except ContractError as error:
                    await dead_letter(event, str(error))
                    continue
                if isinstance(message, DevicePosture):
                    key = message.device_id.encode()
                    await device_inbox.send(key=key, value=_INBOX_ENCODER.encode(message))
                else:
                    key = message.identity_id.encode()
                    await identity_inbox.send(key=key, value=_INBOX_ENCODER.encode(message))

        validate_and_forward.__name__ = f"ingest_{stream_name.replace('.', '_')}"
        return validate_and_forward

    for stream_name in (IDENTITY_STATUS, ENTITLEMENT_CHANGE, ACCESS_EXCEPTION, DEVICE_POSTURE):
        source = app.topic(topics.for_stream(stream_name), **_RAW)
        app.agent(source, name=f"ingest-{stream_name}")(ingest(stream_name))

    async def deliver(key: bytes, stored: Stored) -> None:
        """Publish the outbox: made durable first, cleared (durably) once Kafka acknowledged it.

        A crash before the acknowledgement leaves the outbox in the changelog, to be published
        after recovery; a crash in the short gap between acknowledgement and clearing can repeat a
        record (same `finding_id` and status), never lose one.
        """
        await app.producer.flush()
        for output in stored.outbox:
            topic = findings if output.kind == _FINDING else identity_inbox
            await (await topic.send(key=output.key, value=output.value))
        stored.outbox.clear()
        identities[key] = _STORED_ENCODER.encode(stored)
        await app.producer.flush()

    async def publish(step: Step, outbox: list[Outgoing], partition: int) -> None:
        state = step.state
        key = state.identity_id.encode()
        outbox.extend(Outgoing(_FINDING, key, encode_record(r)) for r in step.records)
        outbox.extend(
            Outgoing(_MESSAGE, m.identity_id.encode(), _INBOX_ENCODER.encode(m))
            for m in step.messages
        )
        stored = Stored(state, outbox)
        identities[key] = _STORED_ENCODER.encode(stored)
        deadlines.set(partition, state.identity_id, step.wake_us)
        if outbox:
            await deliver(key, stored)

    def load(identity_id: str) -> Stored:
        stored = identities.get(identity_id.encode())
        if stored is None:
            return Stored(engine.new_state(identity_id), [])
        return _STORED_DECODER.decode(stored)

    clock = _Clock(settings.clock)

    @app.agent(identity_inbox, name="identities")
    async def run_identities(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            message = _INBOX_DECODER.decode(event.value)
            now_us = clock.now_us(None if isinstance(message, Tick) else message.occurred_at_us)
            if isinstance(message, Tick):
                due, undelivered = deadlines.due(partition, now_us, identities)
                for identity_id in undelivered:
                    await deliver(identity_id.encode(), load(identity_id))
                for identity_id in due:
                    stored = load(identity_id)
                    await publish(engine.advance(stored.state, now_us), stored.outbox, partition)
            else:
                stored = load(message.identity_id)
                step = engine.apply(stored.state, message, now_us)
                await publish(step, stored.outbox, partition)

    @app.agent(device_inbox, name="devices")
    async def run_devices(stream: Any) -> None:
        async for event in stream.events():
            message = _DEVICE_DECODER.decode(event.value)
            stored = devices.get(event.key)
            before = None if stored is None else decode_device_state(stored)
            after, signals = route_device(before, message)
            # Signals first, acknowledged, then the device's state: after a crash in between the
            # event is processed again and the signals repeat, which identities ignore.
            for signal in signals:
                sent = await identity_inbox.send(
                    key=signal.identity_id.encode(), value=_INBOX_ENCODER.encode(signal)
                )
                await sent
            if after is not None and after is not before:
                devices[event.key] = encode_state(after)

    async def send_ticks() -> None:
        for partition in range(settings.partitions):
            await identity_inbox.send(value=_TICK, partition=partition)

    def forget_deadlines(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        deadlines.forget()

    async def metrics(web: Any, request: Any) -> Any:
        # The exposition content type carries parameters, which aiohttp only takes as a header.
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.page("/metrics")(metrics)
    app.timer(interval=settings.tick_interval_s, on_leader=True)(send_ticks)
    app.on_partitions_revoked.connect(forget_deadlines)  # type: ignore[arg-type]  # mode stubs

    return app


def run_worker(settings: WorkerSettings, policy: Policy) -> None:
    """Run a worker in this process until it is stopped (Ctrl-C or SIGTERM)."""
    app = build_app(settings, policy, CollectorRegistry())
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()
