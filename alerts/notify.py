"""`accessdrift notify`: the delivery service. Reads the findings topic (the source of truth) and
delivers every record to each configured sink.

Each sink has its own consumer group (`<group_prefix>.<sink name>`) and commits an offset only
after its receiver accepted every record before it, so a sink that is down delays its own
delivery and no other's, loses nothing, and after a restart resends at most what was not yet
acknowledged. Records of one finding share a partition (the worker keys them by identity), so a
sink sees a finding open before it resolves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from accessdrift.alerts.delivery import Deliverer, DeliveryError, DeliveryMetrics, Sink
from accessdrift.alerts.paging import Alertmanager
from accessdrift.alerts.settings import NotifySettings
from accessdrift.models.errors import BrokerError
from accessdrift.models.findings import Record, decode_record
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.text import printable
from accessdrift.streams.guard import guarded_application

log = logging.getLogger(__name__)

#: Consumer group session timeout: a restarted service takes about half of it to rejoin.
SESSION_TIMEOUT_MS: Final = 10_000

#: How long a rebalance waits for the batch in flight to be accepted and committed. Without the
#: wait, a batch the receiver accepted while the group rebalanced (a killed service's member
#: expiring, a second service joining) could not be committed and was sent again by the next
#: owner. The other members wait in their join meanwhile (well inside aiokafka's 300 s rebalance
#: timeout); a receiver slower than this still gets the batch again (at least once).
SETTLE_WAIT_S: Final = 30.0


@dataclass(frozen=True)
class Source:
    """Where the records come from."""

    broker: str
    topic: str
    security: KafkaSecurity


def _decoded(sink: str, messages: Sequence[Any], metrics: DeliveryMetrics) -> list[Record]:
    records = []
    for message in messages:
        try:
            records.append(decode_record(message.value))
        except (msgspec.DecodeError, ValueError) as error:
            # Not a record this version wrote: skipping it is all any sink could do with it.
            metrics.failed.labels(sink=sink).inc()
            log.error(
                "sink %s skipped %s[%d]@%d: not a findings record (%s)",
                sink,
                message.topic,
                message.partition,
                message.offset,
                printable(str(error), 200),
            )
    return records


async def history(source: Source, group: str) -> AsyncIterator[Record]:
    """The records a sink's group already committed, from the start of the topic (what is left
    of it): what a stateful sink had seen before a restart."""
    options = source.security.client_options()
    reader = AIOKafkaConsumer(bootstrap_servers=source.broker, enable_auto_commit=False, **options)
    committed_reader = AIOKafkaConsumer(
        bootstrap_servers=source.broker, group_id=group, enable_auto_commit=False, **options
    )
    await reader.start()
    await committed_reader.start()
    try:
        await reader.topics()  # fetches the cluster's metadata
        partitions = reader.partitions_for_topic(source.topic) or set()
        ends: dict[TopicPartition, int] = {}
        for partition in partitions:
            tp = TopicPartition(source.topic, partition)
            end = await committed_reader.committed(tp)
            if end:
                ends[tp] = end
        if not ends:
            return
        reader.assign(list(ends))
        await reader.seek_to_beginning(*ends)
        while ends:
            batches = await reader.getmany(timeout_ms=1000, max_records=1000)
            for tp, messages in batches.items():
                for message in messages:
                    if tp in ends and message.offset < ends[tp]:
                        with contextlib.suppress(msgspec.DecodeError, ValueError):
                            yield decode_record(message.value)
            for tp in list(ends):
                if await reader.position(tp) >= ends[tp]:
                    del ends[tp]
    finally:
        await committed_reader.stop()
        await reader.stop()


class _Settle(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka has no stubs
    """Before partitions move, let the batch in flight (from its first record fetched to its
    commit) finish: its commit is still valid while the group is preparing to rebalance."""

    def __init__(self) -> None:
        self._done: asyncio.Event | None = None

    def begin(self) -> None:
        self._done = asyncio.Event()

    def end(self) -> None:
        if self._done is not None:
            self._done.set()
            self._done = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self._done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), SETTLE_WAIT_S)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class SinkRunner:
    """One sink's loop: fetch a batch, deliver it until accepted, commit, repeat."""

    def __init__(
        self,
        sink: Sink,
        source: Source,
        settings: NotifySettings,
        metrics: DeliveryMetrics,
    ) -> None:
        self.sink = sink
        self.source = source
        self.group = f"{settings.group_prefix}.{sink.name}"
        self.linger_s = float(settings.linger)
        self.metrics = metrics
        self.deliverer = Deliverer(sink, metrics, settings.backoff)

    async def run(self) -> None:
        if isinstance(self.sink, Alertmanager):
            async for record in history(self.source, self.group):
                self.sink.remember(record)
        settle = _Settle()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.source.broker,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=SESSION_TIMEOUT_MS // 10,
            **self.source.security.client_options(),
        )
        consumer.subscribe([self.source.topic], listener=settle)
        await consumer.start()
        resending = None
        if isinstance(self.sink, Alertmanager):
            resending = asyncio.create_task(self._resend(self.sink))
        try:
            while True:
                messages = await self._batch(consumer, settle)
                if not messages:
                    continue
                try:
                    await self._deliver_and_commit(consumer, messages)
                finally:
                    settle.end()
        finally:
            if resending is not None:
                resending.cancel()
            await consumer.stop()
            await self.sink.close()

    async def _deliver_and_commit(self, consumer: AIOKafkaConsumer, messages: list[Any]) -> None:
        await self.deliverer.deliver(_decoded(self.sink.name, messages, self.metrics))
        offsets: dict[TopicPartition, int] = {}
        for message in messages:
            offsets[TopicPartition(message.topic, message.partition)] = message.offset + 1
        # A rebalance that did not wait for this batch (SETTLE_WAIT_S) may have moved some of its
        # partitions: their next owner sends their records again; committing them would fail.
        owned = consumer.assignment()
        moved = sorted(f"{tp.topic}[{tp.partition}]" for tp in offsets if tp not in owned)
        if moved:
            log.warning(
                "sink %s: %s moved to another service while delivering; their records may repeat",
                self.sink.name,
                ", ".join(moved),
            )
        try:
            await consumer.commit({tp: n for tp, n in offsets.items() if tp in owned})
        except CommitFailedError as error:
            log.warning("sink %s: commit failed (%s); records may repeat", self.sink.name, error)

    async def _batch(self, consumer: AIOKafkaConsumer, settle: _Settle) -> list[Any]:
        """Up to the sink's batch size: what is there now, and what comes within the linger
        (so a burst, a mass failure, reaches the sink as one batch)."""
        limit = self.sink.max_batch
        fetched = await consumer.getmany(timeout_ms=1000, max_records=limit)
        messages = [m for part in fetched.values() for m in part]
        if not messages:
            return []
        settle.begin()
        loop = asyncio.get_running_loop()
        until = loop.time() + self.linger_s
        while len(messages) < limit and (left := until - loop.time()) > 0:
            more = await consumer.getmany(
                timeout_ms=int(left * 1000), max_records=limit - len(messages)
            )
            messages.extend(m for part in more.values() for m in part)
        return messages

    async def _resend(self, sink: Alertmanager) -> None:
        while True:
            await asyncio.sleep(sink.resend_interval_s)
            try:
                await sink.resend()
            except DeliveryError as error:
                self.metrics.retries.labels(sink=sink.name).inc()
                log.warning("sink %s: re-sending open alerts failed: %s", sink.name, error)


async def serve(
    sinks: list[Sink],
    settings: NotifySettings,
    source: Source,
    registry: CollectorRegistry,
    web_host: str,
    web_port: int,
    stop: asyncio.Event,
) -> None:
    """Run every sink until `stop` is set, with `/metrics` and `/healthz` on the web port."""
    metrics = DeliveryMetrics(registry)
    runners = [SinkRunner(sink, source, settings, metrics) for sink in sinks]

    async def serve_metrics(request: web.Request) -> web.Response:
        del request
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(request: web.Request) -> web.Response:
        del request
        return web.json_response({"status": "ok", "sinks": [s.name for s in sinks]})

    application = guarded_application()
    application.router.add_get("/metrics", serve_metrics)
    application.router.add_get("/healthz", healthz)
    web_runner = web.AppRunner(application, access_log=None)
    await web_runner.setup()
    try:
        await web.TCPSite(web_runner, web_host, web_port).start()
    except OSError as error:
        await web_runner.cleanup()
        raise BrokerError(
            f"cannot listen on {web_host}:{web_port}: {error.strerror}; choose another --web-port"
        ) from None
    tasks = [asyncio.create_task(runner.run(), name=runner.sink.name) for runner in runners]
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = None if task is stopping else task.exception()
            if isinstance(failure, KafkaError):
                raise BrokerError(
                    f"Kafka at {source.broker} failed for sink {task.get_name()}: {failure}",
                    retryable=True,
                )
            if failure is not None:
                raise failure
    finally:
        for task in [*tasks, stopping]:
            task.cancel()
        await asyncio.gather(*tasks, stopping, return_exceptions=True)
        await web_runner.cleanup()
