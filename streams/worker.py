"""The live runtime: the engine on Kafka with faust-streaming (aiokafka transport).

Shape of the pipeline, every arrow a Kafka topic:

    identity.status ┐
    entitlement.change ├─ ingest (validate) ─► <app>.identity-inbox ─► identities agent ─► findings
    access.exception ┘                              ▲          │ (table: identities)
    device.posture ─ ingest ─► <app>.device-inbox ─► devices agent (table: devices)
                                                    └── DeviceSignal / OwnerLink / OwnerSignal
    a record that breaks the contract ─────────────────────────────────────────────► deadletter

Ingest (`streams/ingest.py`) is a plain aiokafka consumer of the input topics: it validates in
batches and forwards one message per inbox partition per batch (`streams/inbox.py`), keyed like
the tables, so faust's per-message cost is paid per batch, not per event. The agents that own a
table read only the inboxes and apply a whole batch in one stream step, so every table write
happens inside stream iteration and lands on the changelog partition of the key. Both agents run
the shared processing loop (`streams/processor.py`) over table-backed stores (`streams/store.py`),
which write each identity touched by a batch once.

Time is event time with watermarks (`streams/watermarks.py`): ingest sends, each
`tick_interval_s`, a mark with how far this worker has read the input partitions it owns (and
processed the inbox partitions it owns) to every inbox partition, in band after what it
forwarded. Each identity-inbox partition fires deadlines against the minimum over every channel
that could still bring it something, never past wall time, so a backlog or a lagging topic raises
no false finding. The clock is kept in a table, so it survives a restart.

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

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import faust
import msgspec
from faust.types.auth import CredentialsT
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from accessdrift.models.clock import MAX_DURATION_S, US_PER_S
from accessdrift.models.events import (
    ACCESS_EXCEPTION,
    DEVICE_POSTURE,
    ENTITLEMENT_CHANGE,
    IDENTITY_STATUS,
)
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.messages import (
    DeviceSignal,
    EntitlementChange,
    ExceptionGrant,
    IdentityMessage,
    StatusChange,
)
from accessdrift.models.policy import Policy
from accessdrift.models.state import NEVER_US, DeviceState
from accessdrift.streams.acks import App
from accessdrift.streams.api import Api
from accessdrift.streams.census import Census
from accessdrift.streams.deadlines import DeadlineIndex
from accessdrift.streams.durable import Acknowledged, stop_unacknowledged
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.guard import application_options
from accessdrift.streams.inbox import DEVICE_INBOX, IDENTITY_INBOX, Batches, Partitioner
from accessdrift.streams.ingest import (
    Ingest,
    IngestSettings,
    Progress,
    fetch_wait_ms,
    ingest_group,
)
from accessdrift.streams.metrics import WorkerMetrics
from accessdrift.streams.processor import Processor
from accessdrift.streams.settings import Topics
from accessdrift.streams.store import FINDING, TableDevices, TableStore
from accessdrift.streams.watermarks import ClockMode, Mark, Report, Watermarks

log = logging.getLogger(__name__)

_ENCODER: Final = msgspec.msgpack.Encoder()
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
    tick_interval_s: float = Field(default=0.2, gt=0)
    #: `wall`: deadlines fire as real time passes, once the input that could meet them is read
    #: (live use). `event`: the clock is event time alone (backfills of history through Kafka).
    clock: ClockMode = "wall"
    #: Dead-letter an event dated more than this ahead of wall time (`wall`) or of the latest event
    #: of its partition (`event`); None: the mode's default.
    max_ahead_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    session_timeout_s: float = Field(default=30.0, gt=0)
    #: For the embedded broker: Tansu 0.6 reports a partition's end as its last batch's first
    #: offset + 1, so faust's changelog recovery on a restart stops short of the rest of that
    #: batch and the state it held is lost. Sending every record in a batch of its own keeps
    #: the reported end right, at some cost in throughput. Real Kafka needs none of this.
    one_record_batches: bool = False
    #: TLS and SASL of every Kafka connection the worker makes.
    kafka: KafkaSecurity = KafkaSecurity()
    #: The bearer token of the access-picture API; None keeps the API shut.
    api_token: SecretStr | None = None

    @property
    def max_ahead_us(self) -> int:
        seconds = DEFAULT_MAX_AHEAD_S[self.clock] if self.max_ahead_s is None else self.max_ahead_s
        return round(seconds * US_PER_S)


#: faust's (and aiokafka's) default batch size.
PRODUCER_MAX_BATCH_BYTES: Final = 16384


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """The same TLS and SASL settings in faust's terms (its producer, consumer and admin)."""
    context = security.ssl_context()
    if security.sasl:
        assert security.sasl_password is not None
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    return None if context is None else faust.SSLCredentials(context)


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


def build_app(settings: WorkerSettings, policy: Policy, registry: CollectorRegistry) -> faust.App:
    """The faust application for these settings and this policy (not started).

    Its metrics live in `registry` and are served as Prometheus text at `/metrics` on the
    worker's web port.
    """
    engine = Engine(policy, grace_s=settings.grace_s)
    census = Census()
    progress = Progress()
    app = App(
        settings.app_id,
        broker=f"kafka://{settings.broker}",
        broker_credentials=faust_credentials(settings.kafka),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        processing_guarantee="at_least_once",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 10),
        producer_linger=0.0,
        producer_max_batch_size=1 if settings.one_record_batches else PRODUCER_MAX_BATCH_BYTES,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
        web_application_options=application_options(),
        # faust's own pages would show table contents and the cluster's layout to anyone who
        # can reach the port; the worker's API (streams/api.py) is what is served.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
    )
    # Every flush (faust's before it commits offsets, ours before publishing an outbox) waits
    # for the table writes before it to be acknowledged; see streams/durable.py.
    Acknowledged(app.producer.buffer)
    table_dir = Path(app.conf.tabledir)
    topics = settings.topics
    identity_inbox_name = f"{settings.app_id}.identity-inbox"
    device_inbox_name = f"{settings.app_id}.device-inbox"
    identity_inbox = app.topic(identity_inbox_name, internal=True, **_RAW)
    device_inbox = app.topic(device_inbox_name, internal=True, **_RAW)
    identities_table = app.Table("identities", key_type=bytes, value_type=bytes)
    devices_table = app.Table("devices", key_type=bytes, value_type=bytes)
    clocks_table = app.Table("clocks", key_type=bytes, value_type=bytes)
    store = TableStore(identities_table)
    device_store = TableDevices(devices_table)
    partition_of = Partitioner(settings.partitions)
    identity_topics = tuple(topics.for_stream(name) for name in IDENTITY_STREAMS)
    device_topic = topics.for_stream(DEVICE_POSTURE)
    owned_identities: dict[int, IdentityPartition] = {}
    #: Identities whose outbox a crash left waiting, by partition, until its first step.
    undelivered: dict[int, list[str]] = {}
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

    # -- publishing --------------------------------------------------------------------------

    async def send_batches(batches: Batches[Any], topic: str) -> list[Awaitable[Any]]:
        return [
            await app.producer.send(topic, None, value, partition, None, None)
            for partition, value in batches.take()
        ]

    async def deliver(identity_ids: list[str]) -> None:
        """Publish the outboxes of these identities, flushed to the table just before: made
        durable first, cleared once Kafka acknowledged them. A crash before the acknowledgement
        leaves the outboxes in the changelog, to be published after recovery; a crash in the
        short gap between acknowledgement and clearing can repeat a record (same `finding_id`
        and status), never lose one."""
        if not identity_ids:
            return
        await app.producer.flush()
        acks: list[Awaitable[Any]] = []
        messages: Batches[IdentityMessage] = Batches(device=False)
        for identity_id in identity_ids:
            for output in store.outbox(identity_id):
                if output.kind == FINDING:
                    sent = await app.producer.send(
                        topics.findings, output.key, output.value, None, None, None
                    )
                    acks.append(sent)
                else:
                    messages.add_encoded(partition_of(output.key), output.value)
        acks.extend(await send_batches(messages, identity_inbox_name))
        await asyncio.gather(*acks)
        for identity_id in identity_ids:
            store.delivered(identity_id)
        store.flush()

    def observe(step: Step, message: IdentityMessage | None = None) -> None:
        metrics.count_step(step.records, step.ended)
        census.track(step, message)

    # -- identities ---------------------------------------------------------------------------

    def active_identity_partitions() -> set[int]:
        return {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == identity_inbox_name
        }

    async def identity_partition(partition: int) -> IdentityPartition:
        """The partition's state, built the first time one of this worker's identity partitions
        is seen after an assignment: for all of them at once, in one pass over the table (a
        million identities are decoded once, not once per partition), the deadline index (the
        truth is the table; the index is a cache of it) and the clock kept in the table. The
        table also holds standby partitions, which are not this worker's to judge.

        The outboxes a crash left unpublished are published by the first step of their own
        partition (`redeliver`): faust writes a table change to the changelog partition of the
        event being processed, not of the key, so clearing an outbox of another partition here
        would put that identity's state in the wrong changelog partition, where a later
        recovery reads it back over newer state or drops it."""
        owned = owned_identities.get(partition)
        if owned is None:
            building = (active_identity_partitions() - owned_identities.keys()) | {partition}
            indexes = {number: DeadlineIndex() for number in building}
            for key, state, waiting in store.entries(lambda key: partition_of(key) in building):
                number = partition_of(key)
                indexes[number].set(state.identity_id, engine.wake_us(state))
                census.load(state, engine.open_findings(state))
                if waiting:
                    undelivered.setdefault(number, []).append(state.identity_id)
            for number, index in indexes.items():
                watermarks = Watermarks(
                    settings.clock,
                    identity_topics,
                    (device_topic,),
                    settings.partitions,
                    settings.partitions,
                )
                kept = clocks_table.get(str(number).encode())
                if kept is not None:
                    watermarks.restore(_CLOCK.decode(kept))
                owned_identities[number] = IdentityPartition(
                    Processor(engine, store, device_store, index), watermarks
                )
            owned = owned_identities[partition]
        redeliver = undelivered.pop(partition, None)
        if redeliver:
            await deliver(redeliver)
        return owned

    def on_mark(partition: int, owned: IdentityPartition, mark: Mark) -> None:
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
        for step in owned.processor.advance(clock_us):
            observe(step)

    def apply_batch(owned: IdentityPartition, messages: list[IdentityMessage]) -> None:
        processor, now_us = owned.processor, owned.now_us
        for message in messages:
            step = processor.apply(message, now_us)
            stream = STREAM_OF_MESSAGE.get(type(message))
            if stream is not None and step.admission is not None:
                metrics.count_event(stream, step.admission)
            observe(step, message)

    @app.agent(identity_inbox, name="identities")
    async def run_identities(stream: Any) -> None:
        async for event in stream.events():
            try:
                await identities_step(event)
            except Exception as error:  # any failure: see stop_unacknowledged
                await stop_unacknowledged(error, settings.data_dir, table_dir, app.producer.flush)

    async def identities_step(event: Any) -> None:
        partition = event.message.partition
        owned = await identity_partition(partition)
        value = IDENTITY_INBOX.decode(event.value)
        if isinstance(value, Mark):
            on_mark(partition, owned, value)
        else:
            apply_batch(owned, value.messages)
        await deliver(store.flush())

    # -- devices ------------------------------------------------------------------------------

    @app.agent(device_inbox, name="devices")
    async def run_devices(stream: Any) -> None:
        async for event in stream.events():
            try:
                await devices_step(event)
            except Exception as error:  # any failure: see stop_unacknowledged
                await stop_unacknowledged(error, settings.data_dir, table_dir, app.producer.flush)

    async def devices_step(event: Any) -> None:
        partition = event.message.partition
        value = DEVICE_INBOX.decode(event.value)
        if isinstance(value, Mark):
            watermarks = device_marks.setdefault(
                partition, Watermarks(settings.clock, (device_topic,), (), 0, 0)
            )
            watermarks.update(value)
            own = watermarks.progress(_wall_us())
            if own is not None:
                progress.inboxes[("device", partition)] = Report("device", "", partition, *own)
            return
        routed: dict[str, DeviceState] = {}
        signals: Batches[DeviceSignal] = Batches(device=False)
        for message in value.messages:
            result = device_processor.route(message, routed)
            metrics.count_event(DEVICE_POSTURE, "applied" if isinstance(result, tuple) else result)
            if isinstance(result, tuple):
                for signal in result[1]:
                    signals.add(partition_of(signal.identity_id.encode()), signal)
        # Signals first, acknowledged, then the devices' states: after a crash in between the
        # events are processed again and the signals repeat, which identities ignore.
        await asyncio.gather(*await send_batches(signals, identity_inbox_name))
        for state in routed.values():
            device_processor.keep_device(state)

    # -- ingest ---------------------------------------------------------------------------------

    def clock_floor_us() -> int:
        return max((owned.now_us for owned in owned_identities.values()), default=NEVER_US)

    # faust starts it once the tables are recovered; it takes an instance, though typed for classes.
    app.service(
        Ingest(  # type: ignore[arg-type]
            IngestSettings(
                bootstrap=settings.broker,
                security=settings.kafka,
                group_id=ingest_group(settings.app_id),
                streams=stream_of_topic,
                identity_inbox=identity_inbox_name,
                device_inbox=device_inbox_name,
                deadletter=topics.deadletter,
                partitions=settings.partitions,
                clock=settings.clock,
                max_ahead_us=settings.max_ahead_us,
                tick_interval_s=settings.tick_interval_s,
                session_timeout_s=settings.session_timeout_s,
            ),
            lambda: app.producer,
            metrics,
            progress,
            clock_floor_us,
        )
    )

    def forget_partitions(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        census.forget()
        owned_identities.clear()
        undelivered.clear()
        device_marks.clear()
        progress.inboxes.clear()

    def shorten_fetch_wait(sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        # faust creates its consumer with a fixed 1.5 s `fetch_max_wait_ms`. A broker that does
        # not answer a long poll as soon as one of many partitions has data (the embedded Tansu
        # broker answers a fetch of 16 partitions about 0.5 s late) then delays each hop between
        # the agents, and so every mark, by that much; a wait of one tick costs at most one idle
        # fetch request per tick. The fetcher reads the value for each request it builds.
        consumer = app.consumer._thread._ensure_consumer()  # type: ignore[attr-defined]
        consumer._fetcher._fetch_max_wait_ms = fetch_wait_ms(settings.tick_interval_s)

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
        metrics.revocations,
    ).install()
    app.on_partitions_revoked.connect(forget_partitions)  # type: ignore[arg-type]  # mode stubs
    app.on_partitions_assigned.connect(shorten_fetch_wait)  # type: ignore[arg-type]

    return app


def run_worker(settings: WorkerSettings, policy: Policy) -> None:
    """Run a worker in this process until it is stopped (Ctrl-C or SIGTERM)."""
    app = build_app(settings, policy, CollectorRegistry())
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()
