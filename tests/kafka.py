"""Reading topics back in tests, with a real Kafka client."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def _read(
    bootstrap: str, topic: str, expected: int, timeout_s: float
) -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
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
    bootstrap: str, topic: str, expected: int, timeout_s: float = 20.0
) -> list[tuple[int, bytes | None, bytes, list[tuple[str, bytes]]]]:
    """Every record of `topic` from the start: (partition, key, value, headers).

    Stops once `expected` records are read or `timeout_s` passes, whichever comes first.
    """
    return asyncio.run(_read(bootstrap, topic, expected, timeout_s))


async def _send(bootstrap: str, topic: str, key: bytes | None, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


def send_raw(bootstrap: str, topic: str, key: bytes | None, value: bytes) -> None:
    """Publish one record exactly as given (for records the contract must reject)."""
    asyncio.run(_send(bootstrap, topic, key, value))
