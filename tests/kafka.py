"""Reading topics back in tests, with a real Kafka client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from accessdrift.streams.poison import RawRecord, record_of


async def _read(
    bootstrap: str, topic: str, expected: int, timeout_s: float, options: dict[str, Any]
) -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, **options
    )
    await consumer.start()
    records: list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for partition, messages in (await consumer.getmany(timeout_ms=200)).items():
                records.extend(
                    (partition.partition, m.key, m.value, list(m.headers)) for m in messages
                )
    finally:
        await consumer.stop()
    return records


def read_topic(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0, **options: Any
) -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every record of `topic` from the start: (partition, key, value, headers).

    Stops once `expected` records are read or `timeout_s` passes, whichever comes first.
    `options` go to the client (TLS settings, say).
    """
    return asyncio.run(_read(bootstrap, topic, expected, timeout_s, options))


async def _send(
    bootstrap: str, topic: str, key: bytes | None, value: bytes, partition: int | None
) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value=value, key=key, partition=partition)
    finally:
        await producer.stop()
    return sent.partition, sent.offset


def send_raw(
    bootstrap: str, topic: str, key: bytes | None, value: bytes, partition: int | None = None
) -> tuple[int, int]:
    """Publish one record exactly as given (for records the contract must reject, or a table
    state a crash would leave); returns its (partition, offset)."""
    return asyncio.run(_send(bootstrap, topic, key, value, partition))


async def _ends(bootstrap: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Each partition's end as a fetch reports it. (The embedded broker's ListOffsets answers
    the last batch's first offset + 1, short of the end when that batch holds several records;
    a fetch's high watermark is right.)"""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        reported = await consumer.end_offsets(partitions)
        ends: dict[TopicPartition, int] = {}
        for tp in partitions:
            if reported[tp] == 0:
                ends[tp] = 0
            else:
                consumer.seek(tp, reported[tp] - 1)
        deadline = time.monotonic() + 10
        while len(ends) < len(partitions) and time.monotonic() < deadline:
            await consumer.getmany(*[tp for tp in partitions if tp not in ends], timeout_ms=200)
            for tp in partitions:
                if tp not in ends and consumer.highwater(tp) is not None:
                    ends[tp] = consumer.highwater(tp)
        assert len(ends) == len(partitions), "no fetch answered with a high watermark"
        return ends
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(await consumer._client._wait_on_metadata(topic) or [])
    ]


async def _behind(
    bootstrap: str, group: str, topics: list[str], ends: dict[TopicPartition, int] | None = None
) -> list[str]:
    """The partitions whose commit is short of their end, as `topic[partition]: committed/end`."""
    # A consumer of the group that never subscribes reads the group's commits without joining.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    behind = []
    try:
        if ends is None:
            ends = await _ends(bootstrap, await _partitions(consumer, topics))
        for tp, end in ends.items():
            committed = (await consumer.committed(tp)) or 0
            if end and committed < end:
                behind.append(f"{tp.topic}[{tp.partition}]: {committed}/{end}")
    finally:
        await consumer.stop()
    return behind


def behind(bootstrap: str, group: str, topics: list[str]) -> list[str]:
    """The partitions of `topics` whose commit by `group` is short of their end, as
    `topic[partition]: committed/end`."""
    return asyncio.run(_behind(bootstrap, group, topics))


def wait_consumed(
    bootstrap: str, group: str, topics: list[str], timeout_s: float = 30, *, moving: bool = False
) -> None:
    """Block until consumer group `group` has committed everything on `topics`: what they hold
    now, when `moving` (topics written all the time, such as the worker's inboxes with their
    marks, are never consumed to their end)."""
    ends = asyncio.run(_ends_of(bootstrap, group, topics)) if moving else None
    deadline = time.monotonic() + timeout_s
    while True:
        behind = asyncio.run(_behind(bootstrap, group, topics, ends))
        if not behind:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"group {group} did not consume {topics} within {timeout_s}s "
                f"(committed/end: {', '.join(behind)})"
            )
        time.sleep(0.3)


async def _ends_of(bootstrap: str, group: str, topics: list[str]) -> dict[TopicPartition, int]:
    # As in _behind: a consumer without a group stops with a CancelledError of its own.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topics)
    finally:
        await consumer.stop()
    return await _ends(bootstrap, partitions)


async def _produce_raw(bootstrap: str, topics: dict[str, str], records: list[RawRecord]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        pending = [await producer.send(topics[r.stream], r.value, key=r.key) for r in records]
        await producer.flush()
        for future in pending:
            await future
    finally:
        await producer.stop()


def produce_raw(bootstrap: str, topics: dict[str, str], records: list[RawRecord]) -> None:
    """Publish records exactly as given (poison among them) to their streams' topics, in order,
    all acknowledged."""
    asyncio.run(_produce_raw(bootstrap, topics, records))


def produce_events(bootstrap: str, topics: dict[str, str], events: list[dict[str, Any]]) -> None:
    """Publish replay-format events (`{"topic": stream, "value": event}`) to the streams' topics
    (`topics` maps stream to topic), keyed as the contract says, in order, all acknowledged."""
    produce_raw(bootstrap, topics, [record_of(event) for event in events])


async def _create_topics(
    bootstrap: str, names: list[str], partitions: int, options: dict[str, Any]
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1) for name in names])
    finally:
        await admin.close()


def create_topics(bootstrap: str, names: list[str], partitions: int = 4, **options: Any) -> None:
    """Create the topics (so that no stream waits for a metadata refresh); `options` go to the
    admin client."""
    asyncio.run(_create_topics(bootstrap, names, partitions, options))
