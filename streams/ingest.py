"""Ingest: read the input topics in batches, validate, and forward to the inboxes.

faust pays about 140 µs of machinery per message it iterates; at a reconciliation's million
events that is minutes of delay for every finding. So the input topics are not faust streams:
one aiokafka consumer (its own group, `<app_id>-ingest`) reads them with `getmany`, each record
is decoded once (`models/decoding.py`: msgspec, with pydantic for the error), and what is valid is
forwarded as one `Batch` per inbox partition (`streams/inbox.py`). What breaks the contract, or
is dated implausibly far ahead, goes to the dead-letter topic with headers naming where it came
from and why.

Offsets are committed only after Kafka acknowledged everything forwarded from them: a crash
re-reads at most the last batch, which the engine recognises as repeats (at-least-once).

Marks (`streams/watermarks.py`) are sent from here, after the batches, at most every
`tick_interval_s` and at least that often when nothing arrives: in band after what they cover,
so an inbox partition that has read a mark has read every record the mark reports as read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from faust.types import ProducerT
from mode import Service

from accessdrift.models.clock import US_PER_S, format_duration_s, format_us
from accessdrift.models.decoding import decode_message
from accessdrift.models.errors import ContractError
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.messages import DevicePosture, IdentityMessage
from accessdrift.models.state import NEVER_US
from accessdrift.models.text import printable
from accessdrift.streams.inbox import Batches, Partitioner, encode
from accessdrift.streams.metrics import EventOutcome, WorkerMetrics
from accessdrift.streams.watermarks import ClockMode, InputProgress, Mark, Report

log = logging.getLogger(__name__)

#: Header names on dead-lettered records.
HEADER_ERROR: Final = "accessdrift-error"
HEADER_TOPIC: Final = "accessdrift-topic"
HEADER_PARTITION: Final = "accessdrift-partition"
HEADER_OFFSET: Final = "accessdrift-offset"

#: Records taken from the consumer per round: large enough that per-round costs (a few sends,
#: a commit) vanish per event, small enough that a round takes tens of milliseconds.
MAX_RECORDS_PER_ROUND: Final = 10_000


def fetch_wait_ms(tick_interval_s: float) -> int:
    """How long a fetch of the worker's consumers waits for data: one tick, so that a quiet
    partition's end offset (which says it is idle) and each hop between the agents are never
    older than that, at the cost of at most one idle fetch request per tick."""
    return max(10, round(tick_interval_s * 1000))


def ingest_group(app_id: str) -> str:
    """The consumer group that reads the input topics (faust's group, `app_id`, reads the
    inboxes)."""
    return f"{app_id}-ingest"


def plausibility_error(
    occurred_at_us: int, mode: ClockMode, max_ahead_us: int, latest_us: int | None, wall_us: int
) -> str | None:
    """Why an event's time is implausible, or None: a device with a wrong clock, a typo of 2126
    for 2026 must not move the clock. Live, the reference is wall time; in a backfill (event
    clock), `latest_us`: the later of the worker's event clock and the latest event it has read
    from any input partition (before either is known, nothing is rejected). Not the latest of the
    event's own partition: a partition quiet for a month of history is not wrong to go on."""
    if mode == "wall":
        reference_us = wall_us
    elif latest_us is not None and latest_us != NEVER_US:
        reference_us = latest_us
    else:
        return None
    if occurred_at_us <= reference_us + max_ahead_us:
        return None
    reference = (
        "wall time" if mode == "wall" else f"the latest event read ({format_us(reference_us)})"
    )
    allowed = format_duration_s(max_ahead_us / US_PER_S)
    return (
        f"value.occurred_at: {format_us(occurred_at_us)} is more than {allowed} ahead of "
        f"{reference}; fix the source's clock, or raise --max-ahead if it is real"
    )


@dataclass
class Progress:
    """What this worker reports of the channels it owns, in its next mark."""

    inputs: InputProgress = field(default_factory=InputProgress)
    #: This worker's inbox partitions' own progress, by (kind, partition); kept by the agents.
    inboxes: dict[tuple[str, int], Report] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestSettings:
    bootstrap: str
    security: KafkaSecurity
    group_id: str
    #: Input topic → the contract stream it carries.
    streams: Mapping[str, str]
    identity_inbox: str
    device_inbox: str
    deadletter: str
    partitions: int
    clock: ClockMode
    max_ahead_us: int
    tick_interval_s: float
    session_timeout_s: float


class _Forget(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no stubs
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Another worker reads these now; what this one knew of them must not be reported.
        for tp in revoked:
            self.progress.inputs.forget(tp.topic, tp.partition)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class Ingest(Service):
    """The input side of a worker, started with its faust app once the tables are recovered."""

    def __init__(
        self,
        settings: IngestSettings,
        producer: Callable[[], ProducerT],
        metrics: WorkerMetrics,
        progress: Progress,
        clock_floor_us: Callable[[], int],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._producer = producer
        self.metrics = metrics
        self.progress = progress
        self._clock_floor_us = clock_floor_us
        self._partition_of = Partitioner(settings.partitions)
        self._marked_at_s = 0.0
        self._consumer: AIOKafkaConsumer | None = None

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    @Service.task
    async def _read(self) -> None:
        settings = self.settings
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            group_id=settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=round(settings.session_timeout_s * 1000),
            heartbeat_interval_ms=max(500, round(settings.session_timeout_s * 100)),
            fetch_max_wait_ms=fetch_wait_ms(settings.tick_interval_s),
            **settings.security.client_options(),
        )
        consumer.subscribe(list(settings.streams), listener=_Forget(self.progress))
        await consumer.start()
        timeout_ms = max(1, round(settings.tick_interval_s * 1000))
        while not self.should_stop:
            rounds = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=MAX_RECORDS_PER_ROUND
            )
            if rounds:
                await self._forward(rounds)
            if time.monotonic() - self._marked_at_s >= settings.tick_interval_s:
                await self._send_marks(consumer)
            if rounds:
                await self._commit(consumer, rounds)

    async def _forward(self, rounds: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        settings, metrics, inputs = self.settings, self.metrics, self.progress.inputs
        producer = self._producer()
        identities: Batches[IdentityMessage] = Batches(device=False)
        devices: Batches[DevicePosture] = Batches(device=True)
        acks: list[Awaitable[Any]] = []
        seen: dict[TopicPartition, int] = {}
        partition_of = self._partition_of
        wall_us = time.time_ns() // 1000
        reference_us = max(self._clock_floor_us(), *inputs.latest_us.values(), NEVER_US)
        for tp, records in rounds.items():
            stream = settings.streams[tp.topic]
            seen_us = inputs.latest_us.get((tp.topic, tp.partition), NEVER_US)
            for record in records:
                try:
                    message = decode_message(stream, record.value)
                except ContractError as error:
                    acks.append(
                        await self._dead_letter(
                            record, stream, "deadlettered", str(error), error.where
                        )
                    )
                    continue
                problem = plausibility_error(
                    message.occurred_at_us,
                    settings.clock,
                    settings.max_ahead_us,
                    reference_us,
                    wall_us,
                )
                if problem is not None:
                    acks.append(
                        await self._dead_letter(
                            record, stream, "implausible", problem, "value.occurred_at"
                        )
                    )
                    continue
                metrics.read_event(stream, message.occurred_at_us, wall_us)
                seen_us = max(seen_us, message.occurred_at_us)
                reference_us = max(reference_us, seen_us)
                if isinstance(message, DevicePosture):
                    devices.add(partition_of(message.device_id.encode()), message)
                else:
                    identities.add(partition_of(message.identity_id.encode()), message)
            seen[tp] = seen_us
        for topic, batches in (
            (settings.identity_inbox, identities),
            (settings.device_inbox, devices),
        ):
            for partition, value in batches.take():
                acks.append(await producer.send(topic, None, value, partition, None, None))
        await asyncio.gather(*acks)
        # Counted as read only once acknowledged: a mark sent later covers these records.
        for tp, seen_us in seen.items():
            if seen_us != NEVER_US:
                inputs.read(tp.topic, tp.partition, seen_us)

    async def _dead_letter(
        self, record: ConsumerRecord, stream: str, outcome: EventOutcome, reason: str, where: str
    ) -> Awaitable[Any]:
        reason = printable(reason, 1000)
        # The reason can quote the record's values; it goes in the dead-letter record's header,
        # beside the payload, and the log names only where the record is and which field failed.
        log.warning(
            "dead-lettered %s[%s]@%s (%s: %s); the reason is in its %s header",
            record.topic,
            record.partition,
            record.offset,
            "implausible" if outcome == "implausible" else "breaks the contract",
            printable(where, 80) or "the whole record",
            HEADER_ERROR,
        )
        self.metrics.count_event(stream, outcome)
        self.metrics.deadletter.labels(topic=record.topic).inc()
        headers = [
            (HEADER_ERROR, reason.encode()),
            (HEADER_TOPIC, record.topic.encode()),
            (HEADER_PARTITION, str(record.partition).encode()),
            (HEADER_OFFSET, str(record.offset).encode()),
        ]
        return await self._producer().send(
            self.settings.deadletter, record.key, record.value, None, None, headers
        )

    async def _commit(
        self, consumer: AIOKafkaConsumer, rounds: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        offsets = {tp: records[-1].offset + 1 for tp, records in rounds.items()}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The partitions moved to another worker, which re-reads from the last commit; the
            # engine takes what it forwards again as repeats.
            log.info("input offsets not committed (partitions reassigned): %s", error)

    async def _send_marks(self, consumer: AIOKafkaConsumer) -> None:
        """Send every inbox partition what this worker knows of the channels it owns."""
        settings, inputs = self.settings, self.progress.inputs
        wall_us, now_s = time.time_ns() // 1000, time.monotonic()
        reports: list[Report] = []
        for tp in consumer.assignment():
            end_offset = consumer.highwater(tp)
            if end_offset is None:
                continue  # nothing fetched yet: the partition holds the clock back
            try:
                position = await consumer.position(tp)
            except (IllegalStateError, KafkaError):
                continue  # revoked meanwhile
            report = inputs.report(
                tp.topic, tp.partition, end_offset, position, settings.clock, wall_us, now_s
            )
            if report is not None:
                reports.append(report)
        reports.extend(self.progress.inboxes.values())
        self._marked_at_s = time.monotonic()
        if not reports:
            return
        counts = {}
        for topic in settings.streams:
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                counts[topic] = len(partitions)
        value = encode(Mark(counts, reports))
        producer = self._producer()
        acks = []
        for partition in range(settings.partitions):
            acks.append(
                await producer.send(settings.identity_inbox, None, value, partition, None, None)
            )
            acks.append(
                await producer.send(settings.device_inbox, None, value, partition, None, None)
            )
        await asyncio.gather(*acks)
