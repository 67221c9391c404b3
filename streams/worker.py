"""The live runtime: the engine on Kafka with faust-streaming (aiokafka transport).

Shape of the pipeline, every arrow a Kafka topic:

    identity.status ┐
    entitlement.change ├─ ingest (validate) ─► <app>.identity-inbox ─► identities agent ─► findings
    access.exception ┘                              ▲          │ (table: identities)
    device.posture ─ ingest ─► <app>.device-inbox ─► devices agent (table: devices)
                                                    └── DeviceSignal / OwnerLink / OwnerSignal
    a record that breaks the contract ─────────────────────────────────────────────► deadletter

The ingest agents only validate and forward, keyed by identity or device, to internal topics this
app owns; the agents that own a table read only those, so every table write happens inside stream
iteration and lands on the changelog partition of the key. Both run the shared processing loop
(`streams/processor.py`) over table-backed stores (`streams/store.py`).

Time is event time with watermarks (`streams/watermarks.py`): every worker sends, each
`tick_interval_s`, a mark with how far it has read the input partitions it owns (and processed
the inbox partitions it owns) to every inbox partition, in band after what it forwarded. Each
identity-inbox partition fires deadlines against the minimum over every channel that could still
bring it something, never past wall time, so a backlog or a lagging topic raises no false finding.
The clock is kept in a table, so it survives a restart.

The worker's web server serves its metrics (`streams/metrics.py`, from each step and from what
is open now, `streams/census.py`) and the access-picture API (`streams/api.py`); faust's own
pages, which would show table contents, are off.

Processing is at-least-once (faust's exactly-once mode has open problems). What a step decides to
publish is written to the identity's table entry together with its new state (an outbox) and made
durable before it is published, then cleared once Kafka acknowledges it. So a crash loses no
finding: the restored state says what was decided, the outbox says what may not have gone out,
and a message redelivered after the crash is recognised by the engine as a repeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import faust
import msgspec
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from accessdrift.models.clock import MAX_DURATION_S, US_PER_S, format_duration_s, format_us
from accessdrift.models.decoding import decode_message
from accessdrift.models.errors import ContractError
from accessdrift.models.events import (
    ACCESS_EXCEPTION,
    DEVICE_POSTURE,
    ENTITLEMENT_CHANGE,
    IDENTITY_STATUS,
)
from accessdrift.models.messages import (
    DevicePosture,
    EntitlementChange,
    ExceptionGrant,
    IdentityMessage,
    InputMessage,
    StatusChange,
)
from accessdrift.models.policy import Policy
from accessdrift.models.state import NEVER_US
from accessdrift.models.text import printable
from accessdrift.streams.api import Api
from accessdrift.streams.census import Census
from accessdrift.streams.deadlines import DeadlineIndex
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.metrics import EventOutcome, WorkerMetrics
from accessdrift.streams.processor import Processor
from accessdrift.streams.settings import Topics
from accessdrift.streams.store import FINDING, TableDevices, TableStore, encode_message
from accessdrift.streams.watermarks import ClockMode, InputProgress, Mark, Report, Watermarks

log = logging.getLogger(__name__)

#: Header names on dead-lettered records.
HEADER_ERROR: Final = "accessdrift-error"
HEADER_TOPIC: Final = "accessdrift-topic"
HEADER_PARTITION: Final = "accessdrift-partition"
HEADER_OFFSET: Final = "accessdrift-offset"

_ENCODER: Final = msgspec.msgpack.Encoder()
_IDENTITY_INBOX: Final = msgspec.msgpack.Decoder(IdentityMessage | Mark)
_DEVICE_INBOX: Final = msgspec.msgpack.Decoder(DevicePosture | Mark)
_CLOCK: Final = msgspec.msgpack.Decoder(int)
_RAW: Final[dict[str, Any]] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
#: Input topics whose records go to the identity inbox (device posture goes to the device inbox).
IDENTITY_STREAMS: Final = (IDENTITY_STATUS, ENTITLEMENT_CHANGE, ACCESS_EXCEPTION)
#: The input stream each identity-inbox message came from (the others are the engine's own).
STREAM_OF_MESSAGE: Final[dict[type, str]] = {
    StatusChange: IDENTITY_STATUS,
    EntitlementChange: ENTITLEMENT_CHANGE,
    ExceptionGrant: ACCESS_EXCEPTION,
}
#: How far ahead of the reference an event may be dated before it is dead-lettered, by clock
#: mode: wall time itself live; the event clock (history can have gaps) in a backfill.
DEFAULT_MAX_AHEAD_S: Final[dict[ClockMode, int]] = {"wall": 3600, "event": 30 * 86_400}


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
    grace_s: float = Field(default=60.0, ge=0, le=MAX_DURATION_S)
    tick_interval_s: float = Field(default=0.5, gt=0)
    #: `wall`: deadlines fire as real time passes, once the input that could meet them is read
    #: (live use). `event`: the clock is event time alone (backfills of history through Kafka).
    clock: ClockMode = "wall"
    #: Dead-letter an event dated more than this ahead of wall time (`wall`) or of the latest event
    #: of its partition (`event`); None: the mode's default.
    max_ahead_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    session_timeout_s: float = Field(default=30.0, gt=0)
    #: The bearer token of the access-picture API; None keeps the API shut.
    api_token: SecretStr | None = None

    @property
    def max_ahead_us(self) -> int:
        seconds = DEFAULT_MAX_AHEAD_S[self.clock] if self.max_ahead_s is None else self.max_ahead_s
        return round(seconds * US_PER_S)


def _wall_us() -> int:
    return time.time_ns() // 1000


@dataclass
class IdentityPartition:
    """What one worker holds for one identity-inbox partition it owns: the processing loop with
    the partition's deadline index, and the watermarks its clock follows."""

    processor: Processor
    watermarks: Watermarks

    @property
    def now_us(self) -> int:
        """The clock a message is applied at (NEVER before the first mark: nothing fires)."""
        return self.watermarks.clock_us


@dataclass
class Progress:
    """What this worker reports of the channels it owns, for the next mark."""

    inputs: InputProgress = field(default_factory=InputProgress)
    #: This worker's inbox partitions' own progress, by (kind, partition).
    inboxes: dict[tuple[str, int], Report] = field(default_factory=dict)
    #: Where reading began in input partitions nothing has been read from: the log start, for
    #: partitions the group has never committed (fetched once).
    log_start: dict[tuple[str, int], int] = field(default_factory=dict)


def plausibility_error(
    occurred_at_us: int, settings: WorkerSettings, latest_us: int | None, wall_us: int
) -> str | None:
    """Why an event's time is implausible, or None: a device with a wrong clock, a typo of 2126
    for 2026 must not move the clock. Live, the reference is wall time; in a backfill (event
    clock), the later of the worker's event clock and the latest event read from the same
    partition (before either is known, nothing is rejected)."""
    if settings.clock == "wall":
        reference_us, reference = wall_us, "wall time"
    elif latest_us is not None and latest_us != NEVER_US:
        reference_us = latest_us
        reference = f"the event clock or the latest event of its partition ({format_us(latest_us)})"
    else:
        return None
    if occurred_at_us <= reference_us + settings.max_ahead_us:
        return None
    allowed = format_duration_s(settings.max_ahead_us / US_PER_S)
    return (
        f"value.occurred_at: {format_us(occurred_at_us)} is more than {allowed} ahead of "
        f"{reference}; fix the source's clock, or raise --max-ahead if it is real"
    )


def build_app(settings: WorkerSettings, policy: Policy, registry: CollectorRegistry) -> faust.App:
    """The faust application for these settings and this policy (not started).

    Its metrics live in `registry` and are served as Prometheus text at `/metrics` on the
    worker's web port.
    """
    engine = Engine(policy, grace_s=settings.grace_s)
    census = Census()
    progress = Progress()
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
        # faust's own pages would show table contents and the cluster's layout to anyone who
        # can reach the port; the worker's API (streams/api.py) is what is served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    topics = settings.topics
    identity_inbox = app.topic(f"{settings.app_id}.identity-inbox", internal=True, **_RAW)
    device_inbox = app.topic(f"{settings.app_id}.device-inbox", internal=True, **_RAW)
    findings = app.topic(topics.findings, **_RAW)
    deadletter = app.topic(topics.deadletter, **_RAW)
    identities_table = app.Table("identities", key_type=bytes, value_type=bytes)
    devices_table = app.Table("devices", key_type=bytes, value_type=bytes)
    clocks_table = app.Table("clocks", key_type=bytes, value_type=bytes)
    store = TableStore(identities_table)
    device_store = TableDevices(devices_table)
    partitioner = DefaultPartitioner()
    all_partitions = list(range(settings.partitions))
    identity_topics = tuple(topics.for_stream(name) for name in IDENTITY_STREAMS)
    device_topic = topics.for_stream(DEVICE_POSTURE)
    input_topics = (*identity_topics, device_topic)
    owned_identities: dict[int, IdentityPartition] = {}
    device_marks: dict[int, Watermarks] = {}
    device_processor = Processor(engine, store, device_store)
    stream_of_topic = {
        topics.for_stream(name): name for name in (*IDENTITY_STREAMS, DEVICE_POSTURE)
    }

    def input_watermarks() -> dict[str, int]:
        """Per stream, the oldest of the newest event times read from each owned partition."""
        marks: dict[str, int] = {}
        for (topic, _), latest_us in list(progress.inputs.latest_us.items()):
            stream = stream_of_topic.get(topic)
            if stream is not None:
                marks[stream] = min(marks.get(stream, latest_us), latest_us)
        return marks

    metrics = WorkerMetrics(registry, policy, census, input_watermarks)

    def partition_of(key: bytes) -> int:
        partition: int = partitioner(key, all_partitions, all_partitions)
        return partition

    # -- publishing --------------------------------------------------------------------------

    async def deliver(identity_id: str) -> None:
        """Publish the identity's outbox: made durable first, cleared (durably) once Kafka
        acknowledged it. A crash before the acknowledgement leaves the outbox in the changelog,
        to be published after recovery; a crash in the short gap between acknowledgement and
        clearing can repeat a record (same `finding_id` and status), never lose one."""
        outbox = store.outbox(identity_id)
        if not outbox:
            return
        await app.producer.flush()
        for output in outbox:
            topic = findings if output.kind == FINDING else identity_inbox
            await (await topic.send(key=output.key, value=output.value))
        store.delivered(identity_id)
        await app.producer.flush()

    async def published(step: Step, message: IdentityMessage | None = None) -> None:
        metrics.count_step(step.records, step.ended)
        census.track(step, message)
        await deliver(step.state.identity_id)

    async def dead_letter(event: Any, stream: str, outcome: EventOutcome, reason: str) -> None:
        message = event.message
        metrics.count_event(stream, outcome)
        reason = printable(reason, 1000)
        log.warning(
            "dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason
        )
        metrics.deadletter.labels(topic=message.topic).inc()
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

    # -- ingest: validate and forward --------------------------------------------------------

    def implausible(message: InputMessage, event: Any, wall_us: int) -> str | None:
        source = event.message
        latest_us = max(
            [progress.inputs.latest_us.get((source.topic, source.partition), NEVER_US)]
            + [owned.watermarks.clock_us for owned in owned_identities.values()]
        )
        return plausibility_error(message.occurred_at_us, settings, latest_us, wall_us)

    def ingest(stream_name: str) -> Callable[[Any], Coroutine[Any, Any, None]]:
        async def validate_and_forward(stream: Any) -> None:
            async for event in stream.events():
                source = event.message
                wall_us = _wall_us()
                try:
                    message = decode_message(stream_name, event.value)
                except ContractError as error:
                    await dead_letter(event, stream_name, "deadlettered", str(error))
                    progress.inputs.read(source.topic, source.partition, source.offset, None)
                    continue
                problem = implausible(message, event, wall_us)
                if problem is not None:
                    await dead_letter(event, stream_name, "implausible", problem)
                    progress.inputs.read(source.topic, source.partition, source.offset, None)
                    continue
                metrics.read_event(stream_name, message.occurred_at_us, wall_us)
                if isinstance(message, DevicePosture):
                    key = message.device_id.encode()
                    await device_inbox.send(key=key, value=_ENCODER.encode(message))
                else:
                    key = message.identity_id.encode()
                    await identity_inbox.send(key=key, value=encode_message(message))
                # After the forward: a mark sent later covers this record.
                progress.inputs.read(
                    source.topic, source.partition, source.offset, message.occurred_at_us
                )

        validate_and_forward.__name__ = f"ingest_{stream_name.replace('.', '_')}"
        return validate_and_forward

    for stream_name in (*IDENTITY_STREAMS, DEVICE_POSTURE):
        source = app.topic(topics.for_stream(stream_name), **_RAW)
        app.agent(source, name=f"ingest-{stream_name}")(ingest(stream_name))

    # -- identities ---------------------------------------------------------------------------

    async def identity_partition(partition: int) -> IdentityPartition:
        """The partition's state, built the first time it is seen after an assignment: the
        deadline index from the table (the truth; the index is a cache of it), the clock kept in
        the table, and the outboxes a crash left unpublished, published now."""
        owned = owned_identities.get(partition)
        if owned is not None:
            return owned
        index = DeadlineIndex()
        undelivered = []
        for key, state, waiting in store.entries():
            if partition_of(key) == partition:
                index.set(state.identity_id, engine.wake_us(state))
                census.load(state, engine.open_findings(state))
                if waiting:
                    undelivered.append(state.identity_id)
        watermarks = Watermarks(
            settings.clock, identity_topics, settings.partitions, settings.partitions
        )
        kept = clocks_table.get(str(partition).encode())
        if kept is not None:
            watermarks.restore(_CLOCK.decode(kept))
        owned = owned_identities[partition] = IdentityPartition(
            Processor(engine, store, device_store, index), watermarks
        )
        for identity_id in undelivered:
            await deliver(identity_id)
        return owned

    async def on_mark(partition: int, owned: IdentityPartition, mark: Mark) -> None:
        wall_us = _wall_us()
        watermarks = owned.watermarks
        watermarks.update(mark)
        own = watermarks.progress(wall_us)
        if own is not None:
            watermarks.set_own(partition, own)
            progress.inboxes[("identity", partition)] = Report("identity", "", partition, *own)
        before_us = watermarks.clock_us
        clock_us = watermarks.advance(wall_us)
        if clock_us is None:
            return
        metrics.clock_lag.labels(partition=str(partition)).set(
            max(0, wall_us - clock_us) / US_PER_S
        )
        if clock_us == before_us:
            return
        census.advance(clock_us)
        clocks_table[str(partition).encode()] = _ENCODER.encode(clock_us)
        for step in list(owned.processor.advance(clock_us)):
            await published(step)

    @app.agent(identity_inbox, name="identities")
    async def run_identities(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            owned = await identity_partition(partition)
            message = _IDENTITY_INBOX.decode(event.value)
            if isinstance(message, Mark):
                await on_mark(partition, owned, message)
                continue
            step = owned.processor.apply(message, owned.now_us)
            stream = STREAM_OF_MESSAGE.get(type(message))
            if stream is not None and step.admission is not None:
                metrics.count_event(stream, step.admission)
            await published(step, message)

    # -- devices ------------------------------------------------------------------------------

    @app.agent(device_inbox, name="devices")
    async def run_devices(stream: Any) -> None:
        async for event in stream.events():
            partition = event.message.partition
            message = _DEVICE_INBOX.decode(event.value)
            if isinstance(message, Mark):
                watermarks = device_marks.setdefault(
                    partition, Watermarks(settings.clock, (device_topic,), 0, 0)
                )
                watermarks.update(message)
                own = watermarks.progress(_wall_us())
                if own is not None:
                    progress.inboxes[("device", partition)] = Report("device", "", partition, *own)
                continue
            routed = device_processor.route(message)
            metrics.count_event(DEVICE_POSTURE, "applied" if isinstance(routed, tuple) else routed)
            if not isinstance(routed, tuple):
                continue
            state, signals = routed
            # Signals first, acknowledged, then the device's state: after a crash in between the
            # event is processed again and the signals repeat, which identities ignore.
            for signal in signals:
                sent = await identity_inbox.send(
                    key=signal.identity_id.encode(), value=encode_message(signal)
                )
                await sent
            device_processor.keep_device(state)

    # -- marks: how far every channel has been read ------------------------------------------

    async def start_offset(topic: str, partition: int, tp: Any) -> int | None:
        # faust keeps the group's committed offsets (where reading resumed) for assigned parts.
        committed = app.consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
        if committed is not None:
            return int(committed)
        key = (topic, partition)
        if key not in progress.log_start:
            earliest = await app.consumer.earliest_offsets(tp)
            if tp in earliest:
                progress.log_start[key] = int(earliest[tp])
        return progress.log_start.get(key)

    async def send_marks() -> None:
        assignment = app.consumer.assignment()
        if not assignment:
            return
        wall_us = _wall_us()
        reports: list[Report] = []
        for tp in assignment:
            if tp.topic in input_topics:
                report = progress.inputs.report(
                    tp.topic,
                    tp.partition,
                    app.consumer.highwater(tp),
                    await start_offset(tp.topic, tp.partition, tp),
                    settings.clock,
                    wall_us,
                )
                if report is not None:
                    reports.append(report)
        reports.extend(progress.inboxes.values())
        counts = {}
        for topic in input_topics:
            count = app.consumer.topic_partitions(topic)
            if count:
                counts[topic] = count
        value = _ENCODER.encode(Mark(counts, reports))
        for partition in all_partitions:
            await identity_inbox.send(value=value, partition=partition)
            await device_inbox.send(value=value, partition=partition)

    def forget_partitions(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        census.forget()
        owned_identities.clear()
        device_marks.clear()
        progress.inboxes.clear()
        progress.log_start.clear()

    def clock_of(identity_id: str) -> int:
        owned = owned_identities.get(partition_of(identity_id.encode()))
        return NEVER_US if owned is None else owned.now_us

    Api(
        app,
        settings.api_token,
        registry,
        census,
        store.peek,
        clock_of,
        lambda: sorted(owned_identities),
    ).install()
    app.timer(interval=settings.tick_interval_s)(send_marks)
    app.on_partitions_revoked.connect(forget_partitions)  # type: ignore[arg-type]  # mode stubs

    return app


def run_worker(settings: WorkerSettings, policy: Policy) -> None:
    """Run a worker in this process until it is stopped (Ctrl-C or SIGTERM)."""
    app = build_app(settings, policy, CollectorRegistry())
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()
