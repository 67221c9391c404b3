"""`accessdrift produce`: publish replay-format lines to Kafka, each to its stream's topic.

Every line is validated against the contract first; a bad line is reported as `FILE:LINE:
reason` and not sent. Records are keyed as the contract says (identity streams by
`identity_id`, device posture by `device_id`), so one key always lands on one partition. With a
rate, lines are sent no faster than that many a second (a simulated organisation's feed played
in real time: `accessdrift simulate | accessdrift produce --rate 2000 -`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Final, TextIO

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from accessdrift.models.decoding import decode_message_line
from accessdrift.models.errors import BrokerError, ContractError
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.messages import DevicePosture
from accessdrift.models.text import printable
from accessdrift.streams.settings import Topics


class _Line(msgspec.Struct):
    value: msgspec.Raw


_LINE_DECODER = msgspec.json.Decoder(_Line)
#: Pacing sleeps only when this far ahead of the rate, so that it costs a sleep per few
#: records, not per record.
PACING_S = 0.005


@dataclass
class ProduceSummary:
    lines: int = 0
    sent: int = 0
    rejected: int = 0

    def describe(self) -> str:
        return f"produce: {self.lines:,} lines read, {self.sent:,} sent, {self.rejected:,} rejected"


class _LastError(logging.Handler):
    """Keeps the last connection error aiokafka logged."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.message = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


#: aiokafka's names for a broker refusing the client's SASL credentials or mechanism.
SASL_REFUSALS: Final = ("SaslAuthenticationFailed", "UnsupportedSaslMechanism")


async def start_producer(bootstrap: str, security: KafkaSecurity) -> AIOKafkaProducer:
    """A started producer that waits for every in-sync replica (`acks=all`); raises a
    BrokerError saying what to check when Kafka cannot be reached."""
    # aiokafka logs each failed connection attempt; the BrokerError below says it once, clearly,
    # with the last attempt's cause (a refused connection, a certificate that failed to verify).
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.propagate = False
    last = _LastError()
    aiokafka_log.addHandler(last)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, **security.client_options()
    )
    try:
        await producer.start()
    except KafkaError as error:
        await producer.stop()
        cause = f": {printable(last.message, 300)}" if last.message else ""
        refused = any(name in (last.message or "") for name in SASL_REFUSALS)
        if refused:
            hint = (
                "check ACCESSDRIFT_KAFKA_SASL_USERNAME and SASL_PASSWORD (or SASL_PASSWORD_FILE), "
                "and that the broker offers ACCESSDRIFT_KAFKA_SASL_MECHANISM"
            )
        elif security.tls:
            hint = (
                "check the broker's address and, for TLS, ACCESSDRIFT_KAFKA_CA_FILE and the "
                "client certificate"
            )
        else:
            hint = "start one with `accessdrift broker` or set --broker / ACCESSDRIFT_BROKER"
        raise BrokerError(
            f"cannot reach Kafka at {bootstrap} over {security.describe()} "
            f"({type(error).__name__}{cause}); {hint}",
            # Credentials the broker refused stay refused until someone changes them.
            retryable=not refused,
            retry_after_s=None if refused else 1.0,
        ) from None
    finally:
        aiokafka_log.removeHandler(last)
        aiokafka_log.propagate = True
    return producer


async def _produce(
    inputs: Iterable[tuple[str, BinaryIO]],
    bootstrap: str,
    security: KafkaSecurity,
    topics: Topics,
    errors: TextIO,
    rate_per_s: float | None,
) -> ProduceSummary:
    summary = ProduceSummary()
    producer = await start_producer(bootstrap, security)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        pending: list[asyncio.Future[Any]] = []
        for name, stream in inputs:
            for line_number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                summary.lines += 1
                try:
                    stream_name, message = decode_message_line(line)
                except ContractError as error:
                    summary.rejected += 1
                    errors.write(f"{name}:{line_number}: {error}\n")
                    continue
                key = (
                    message.device_id if isinstance(message, DevicePosture) else message.identity_id
                )
                value = bytes(_LINE_DECODER.decode(line).value)
                if rate_per_s is not None:
                    ahead_s = started + len(pending) / rate_per_s - loop.time()
                    if ahead_s > PACING_S:
                        await asyncio.sleep(ahead_s)
                pending.append(
                    await producer.send(
                        topics.for_stream(stream_name), value=value, key=key.encode()
                    )
                )
        await producer.flush()
        for future in pending:
            await future
            summary.sent += 1
    finally:
        await producer.stop()
    return summary


def produce(
    inputs: Iterable[tuple[str, BinaryIO]],
    bootstrap: str,
    topics: Topics,
    errors: TextIO,
    rate_per_s: float | None = None,
    security: KafkaSecurity | None = None,
) -> ProduceSummary:
    """Send every valid line of every input, in order, at most `rate_per_s` a second when
    given; report bad lines to `errors`.

    Raises BrokerError when Kafka cannot be reached.
    """
    connection = KafkaSecurity() if security is None else security
    return asyncio.run(_produce(inputs, bootstrap, connection, topics, errors, rate_per_s))
