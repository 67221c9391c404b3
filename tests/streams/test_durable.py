"""The acknowledged flush: it returns only once every record put before it is acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from accessdrift.models.errors import BrokerError
from accessdrift.streams.durable import Acknowledged


class Buffer:
    """faust's buffer as far as the flush sees it: it queues what is put; its own flush gives
    up early (as faust's does after 0.1 s without progress)."""

    def __init__(self) -> None:
        self.queued: list[asyncio.Future[Any]] = []

    def put(self, future: asyncio.Future[Any]) -> None:
        self.queued.append(future)

    async def flush(self) -> None:
        return None


def test_flush_waits_for_every_record_put_before_it() -> None:
    async def go() -> list[str]:
        buffer = Buffer()
        acknowledged = Acknowledged(buffer)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        buffer.put(first)
        buffer.put(second)
        assert buffer.queued == [first, second], "records still reach the real buffer"
        seen: list[str] = []
        loop.call_later(0.05, first.set_result, None)
        loop.call_later(0.3, lambda: (seen.append("second acknowledged"), second.set_result(None)))
        await buffer.flush()
        seen.append("flushed")
        assert acknowledged.pending == 0
        return seen

    assert asyncio.run(go()) == ["second acknowledged", "flushed"]


def test_a_flush_with_nothing_pending_returns_at_once() -> None:
    async def go() -> None:
        buffer = Buffer()
        Acknowledged(buffer)
        await asyncio.wait_for(buffer.flush(), 0.5)

    asyncio.run(go())


def test_a_failed_write_stops_the_flush_with_a_retryable_broker_error() -> None:
    async def go() -> None:
        buffer = Buffer()
        Acknowledged(buffer)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        buffer.put(future)
        future.set_exception(TimeoutError("request timed out"))
        await buffer.flush()

    with pytest.raises(BrokerError, match="not acknowledged by Kafka") as raised:
        asyncio.run(go())
    assert raised.value.retryable
    assert isinstance(raised.value.__cause__, TimeoutError)
