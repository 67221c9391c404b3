"""A producer flush that means "acknowledged by Kafka", for faust's producer buffer.

Table writes go through faust's `ProducerBuffer` (a `__setitem__` cannot await the send). Its
`flush()` stops waiting as soon as 0.1 s pass without a record leaving the queue
(`ProducerBuffer.flush_atmost` in faust-streaming 0.11 to 0.15), so it can return with table
writes still queued. faust's consumer flushes, then commits the input offsets; the worker
flushes, then publishes what the outbox holds. Under load (a slow broker, a busy machine, one
record per batch) a kill -9 after such a flush lost a table write whose input offset was
already committed: the rebalance fault test missed a mover finding that way. With this in
place, a flush returns only once every record handed to the buffer before it has been
acknowledged, or raises the error of one that failed, so nothing is committed past it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from accessdrift.models.errors import BrokerError


class Acknowledged:
    """Tracks every record put into `buffer` until Kafka acknowledges it, and makes the
    buffer's `flush` wait for all of them. `buffer` is faust's `ProducerBuffer` (typed `Any`:
    its `put` and `flush` are replaced on the instance); what goes in by `put` are faust's
    `FutureMessage`s, futures that resolve when Kafka acknowledges the record."""

    def __init__(self, buffer: Any) -> None:
        self._pending: set[asyncio.Future[Any]] = set()
        self._put = buffer.put
        buffer.put = self._track
        buffer.flush = self.flush

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self._put(future)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Return once every record put so far is acknowledged; raise if one failed."""
        while self._pending:
            done, _ = await asyncio.wait(set(self._pending))
            for future in done:
                error = None if future.cancelled() else future.exception()
                if error is not None:
                    raise BrokerError(
                        "a table or outbox write was not acknowledged by Kafka "
                        f"({type(error).__name__}); nothing is committed past it: check the "
                        "broker, then restart the worker",
                        retryable=True,
                    ) from error
