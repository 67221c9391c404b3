"""Delivery: the interfaces between records and the places they go, and the retry loop.

* A `Transport` carries formatted records (`formats.Envelope`) somewhere: Splunk HEC, syslog, a
  Kafka topic, a webhook (`alerts/transports.py`). Any format goes over any transport.
* A `Sink` takes records. `FormattedSink` is a formatter and a transport; the pagers
  (`alerts/paging.py`) are sinks with their own API's shape.
* `Deliverer` hands a batch to a sink until it is accepted: network failures, 408, 429 and 5xx
  are retried with capped exponential backoff and full jitter (at least `Retry-After` when the
  server says so); any other 4xx is not retried: the record is counted as failed, logged with
  its id, and skipped, since repeating a request the receiver refused cannot succeed.

A sink raises `DeliveryError` for a batch it could not deliver; it never logs or shows a secret,
and neither does anything here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from accessdrift.alerts.formats import Envelope, Formatter, envelope
from accessdrift.models.errors import AccessdriftError
from accessdrift.models.findings import Record, record_key
from accessdrift.models.text import printable

log = logging.getLogger(__name__)

#: HTTP statuses worth repeating: the receiver was busy or timed out, not the request wrong.
RETRYABLE_STATUS: Final = frozenset({408, 429})
#: The longest a `Retry-After` is honoured for, so that a hostile or broken receiver cannot
#: park delivery for days.
MAX_RETRY_AFTER_S: Final = 900.0


class DeliveryError(AccessdriftError):
    """A sink could not deliver a batch. `retryable`: repeating it may succeed (the receiver was
    unreachable, busy or failing); `retry_after_s`: how long the receiver asked to wait."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status
        super().__init__(message)


def http_error(service: str, status: int, reason: str, retry_after: str | None) -> DeliveryError:
    """The error for an HTTP response that did not accept the request, classified by status."""
    retry_after_s: float | None = None
    if retry_after is not None:
        try:
            retry_after_s = min(MAX_RETRY_AFTER_S, max(0.0, float(retry_after)))
        except ValueError:
            retry_after_s = None  # an HTTP date: the backoff decides instead
    retryable = status in RETRYABLE_STATUS or status >= 500
    advice = "will retry" if retryable else "not retried; check the sink's settings"
    return DeliveryError(
        f"{service} answered {status} {printable(reason, 200)} ({advice})",
        retryable=retryable,
        retry_after_s=retry_after_s,
        status=status,
    )


class Transport(Protocol):
    """Carries formatted records somewhere. `send` returns once the receiver accepted the whole
    batch, or raises DeliveryError."""

    @property
    def max_batch(self) -> int:
        """The most records one `send` carries (1 where the receiver takes one per request)."""
        ...

    async def send(self, batch: Sequence[Envelope]) -> None: ...

    async def close(self) -> None: ...


class Sink(Protocol):
    """Takes records. `deliver` returns once the receiver accepted every record of the batch, or
    raises DeliveryError (a retried batch may repeat records the receiver already took: every
    receiver here is given an id to drop repeats by)."""

    @property
    def name(self) -> str: ...

    @property
    def max_batch(self) -> int: ...

    async def deliver(self, records: Sequence[Record]) -> None: ...

    async def close(self) -> None: ...


class FormattedSink:
    """A formatter and a transport: records formatted, then carried."""

    def __init__(self, name: str, formatter: Formatter, transport: Transport) -> None:
        self.name = name
        self.formatter = formatter
        self.transport = transport
        self.max_batch = transport.max_batch

    async def deliver(self, records: Sequence[Record]) -> None:
        await self.transport.send([envelope(self.formatter, record) for record in records])

    async def close(self) -> None:
        await self.transport.close()


class DeliveryMetrics:
    """What the delivery service counts, per sink (a bounded label: the configured names)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivered = Counter(
            "accessdrift_notify_delivered_records",
            "Records a sink's receiver accepted.",
            ["sink"],
            registry=registry,
        )
        self.retries = Counter(
            "accessdrift_notify_retries",
            "Deliveries repeated after a retryable failure (network, 408, 429, 5xx).",
            ["sink"],
            registry=registry,
        )
        self.failed = Counter(
            "accessdrift_notify_failed_records",
            "Records given up on: refused by the receiver with a 4xx, or not decodable.",
            ["sink"],
            registry=registry,
        )
        self.last_success = Gauge(
            "accessdrift_notify_last_success_timestamp_seconds",
            "When a sink last delivered a batch (Unix time).",
            ["sink"],
            registry=registry,
        )


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: attempt n waits a random time up to
    min(max_s, initial_s * 2**n), and never less than what the receiver asked for."""

    initial_s: float = 0.5
    max_s: float = 60.0

    def delay_s(
        self, attempt: int, retry_after_s: float | None, draw: Callable[[], float]
    ) -> float:
        ceiling_s = min(self.max_s, self.initial_s * float(2 ** min(attempt, 32)))
        delay_s = draw() * ceiling_s
        if retry_after_s is not None:
            delay_s = max(delay_s, retry_after_s)
        return delay_s


class Deliverer:
    """Delivers batches to one sink, retrying until accepted (see the module's docstring).

    `sleep`, `draw` and `wall_s` are the shell's clock and randomness, passed in so that tests can
    run an hour of outage in no time.
    """

    def __init__(
        self,
        sink: Sink,
        metrics: DeliveryMetrics,
        backoff: Backoff = Backoff(),
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.backoff = backoff
        self._sleep = sleep
        self._draw = draw
        self._wall_s = wall_s
        self._labels = {"sink": sink.name}

    async def deliver(self, records: Sequence[Record]) -> None:
        """Returns once every record was accepted or refused for good."""
        if not records:
            return
        try:
            await self._until_accepted(records)
        except DeliveryError as error:
            if len(records) > 1:
                # One bad record must not cost the rest of the batch: find it by sending each.
                for record in records:
                    await self.deliver([record])
                return
            self.metrics.failed.labels(**self._labels).inc()
            log.error(
                "sink %s gave up on record %s: %s",
                self.sink.name,
                printable(record_key(records[0]), 80),
                error,
            )

    async def _until_accepted(self, records: Sequence[Record]) -> None:
        attempt = 0
        while True:
            try:
                await self.sink.deliver(records)
            except DeliveryError as error:
                if not error.retryable:
                    raise
                delay_s = self.backoff.delay_s(attempt, error.retry_after_s, self._draw)
                self.metrics.retries.labels(**self._labels).inc()
                log.warning(
                    "sink %s: %s; retrying %d record(s) in %.1f s",
                    self.sink.name,
                    error,
                    len(records),
                    delay_s,
                )
                await self._sleep(delay_s)
                attempt += 1
                continue
            self.metrics.delivered.labels(**self._labels).inc(len(records))
            self.metrics.last_success.labels(**self._labels).set(self._wall_s())
            return
