"""The HTTP shell of `accessdrift ingest`: verify, map, validate, produce, then answer.

- `POST /ssf/<transmitter>`: an RFC 8935 push of one SET (`application/secevent+jwt`). 202 once
  Kafka acknowledged every record it maps to (`acks=all`), so an accepted signal is never lost;
  400 with `{"err": <RFC 8935 code>, "description": ...}` for a SET refused, 401/403 for the
  push's own authorization, 503 with `Retry-After` while Kafka cannot take records (the
  transmitter retries, and a retry is a repeat the engine recognises by `event_id`).
- `POST /webhooks/<source>`: a Standard Webhooks delivery of a source's own JSON; the same
  answers, with `{"error": ...}`.
- `GET /healthz`, `GET /metrics`: open, as on the worker.

A `jti` seen before (within the SETs' `max_age`, which bounds how long one is accepted at all)
is acknowledged and not produced again. Every refusal is counted by source and reason; request
bodies are bounded, clients rate-limited, and neither tokens nor payloads are ever logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import SecretStr

from accessdrift.models.errors import BrokerError, ContractError
from accessdrift.models.events import decode_event
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.text import echo
from accessdrift.streams.api import authorized
from accessdrift.streams.guard import RateLimiter, guard
from accessdrift.streams.produce import start_producer
from accessdrift.streams.settings import Topics
from accessdrift.streams.signals import caep, risc, scim
from accessdrift.streams.signals.mapping import Signal
from accessdrift.streams.signals.sets import KeySet, SetError, UnknownKeyError, verify
from accessdrift.streams.signals.settings import IngestSettings, Transmitter, Webhook
from accessdrift.streams.signals.webhooks import (
    WebhookError,
    map_payload,
    secret_bytes,
    verify_signature,
)

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
#: A transmitter pushes in bursts (a reorganisation disables hundreds of accounts at once).
RATE_PER_S: Final = 200.0
BURST: Final = 2000.0
#: `jti`s remembered for repeats, at most; beyond, the oldest go (the engine still takes a
#: repeated `event_id` as a repeat).
MAX_REMEMBERED: Final = 200_000
#: A JWKS is fetched again for an unknown `kid` at most this often (seconds), so a stream of
#: forged `kid`s cannot turn the receiver into a load generator against the transmitter.
JWKS_REFRESH_S: Final = 60.0
JWKS_TIMEOUT_S: Final = 10.0
MAX_JWKS_BYTES: Final = 256 * 1024
SET_MEDIA_TYPE: Final = "application/secevent+jwt"
MAPPERS: Final = {**caep.MAPPERS, **risc.MAPPERS, **scim.MAPPERS}


class Producer(Protocol):
    """Where mapped records go: `send` returns once Kafka acknowledged all of them."""

    async def send(self, records: list[tuple[str, bytes, bytes]]) -> None: ...


class IngestMetrics:
    """The receiver's metrics, in the registry it is given. `source` is a configured name,
    `reason` and `stream` closed sets: every label is bounded."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "accessdrift_ingest_requests",
            "Requests received, by source and outcome (accepted, repeat, rejected).",
            ["source", "outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "accessdrift_ingest_rejected",
            "Requests refused, by source and reason (an RFC 8935 error code, or unsigned, "
            "bad_signature, stale, unmapped, too_large, kafka_unavailable).",
            ["source", "reason"],
            registry=registry,
        )
        self.records = Counter(
            "accessdrift_ingest_records",
            "Contract records produced (acknowledged by Kafka), by source and stream.",
            ["source", "stream"],
            registry=registry,
        )
        self.unmapped = Counter(
            "accessdrift_ingest_unmapped_events",
            "Events acknowledged that map to no record (an event type not mapped, a "
            "credential update, claims with neither role nor status), by source.",
            ["source"],
            registry=registry,
        )


@dataclass
class _TransmitterState:
    settings: Transmitter
    keys: KeySet | None
    token: SecretStr | None
    fetched_at_s: float = float("-inf")


class _Remembered:
    """`jti`s accepted, oldest first, each until its SET would be refused as stale anyway."""

    def __init__(self) -> None:
        self._until_s: OrderedDict[tuple[str, str], float] = OrderedDict()

    def seen(self, key: tuple[str, str], now_s: float) -> bool:
        while self._until_s:
            oldest, until_s = next(iter(self._until_s.items()))
            if until_s > now_s and len(self._until_s) <= MAX_REMEMBERED:
                break
            del self._until_s[oldest]
        return key in self._until_s

    def remember(self, key: tuple[str, str], until_s: float) -> None:
        self._until_s[key] = until_s


def _rfc8935(error: SetError) -> web.Response:
    return web.json_response(
        {"err": error.code, "description": error.description}, status=error.status
    )


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class Receiver:
    """The ingest service for these settings: `application()` serves it."""

    def __init__(
        self,
        settings: IngestSettings,
        topics: Topics,
        producer: Producer,
        registry: CollectorRegistry,
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        fetch: Callable[[str], Awaitable[bytes]] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.producer = producer
        self.registry = registry
        self.metrics = IngestMetrics(registry)
        self.clock = clock
        self.fetch = fetch or _fetch
        self.transmitters: dict[str, _TransmitterState] = {}
        for transmitter in settings.transmitters:
            where = f"transmitter {transmitter.name}"
            try:
                token = transmitter.token.read(environ) if transmitter.token else None
                keys = None
                if transmitter.jwks_file is not None:
                    keys = KeySet(transmitter.jwks_file.read_bytes())
            except OSError as error:
                raise ValueError(f"{where}: cannot read jwks_file: {error.strerror}") from None
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            self.transmitters[transmitter.name] = _TransmitterState(transmitter, keys, token)
        self.webhooks: dict[str, tuple[Webhook, list[bytes]]] = {}
        for webhook in settings.webhooks:
            try:
                secrets = [secret_bytes(ref.read(environ)) for ref in webhook.secrets]
            except ValueError as error:
                raise ValueError(f"webhook {webhook.name}: {error}") from None
            self.webhooks[webhook.name] = (webhook, secrets)
        self.remembered = _Remembered()

    async def start(self) -> None:
        """Fetch the JWKS of every transmitter that publishes one at a URL."""
        for state in self.transmitters.values():
            if state.settings.jwks_url is not None:
                await self._refresh(state)

    def application(self) -> web.Application:
        application = web.Application(
            middlewares=[guard(RateLimiter(RATE_PER_S, BURST), takes_body=True)],
            client_max_size=MAX_BODY_BYTES,
        )
        application.router.add_post("/ssf/{name}", self._ssf)
        application.router.add_post("/webhooks/{name}", self._webhook)
        application.router.add_get("/healthz", self._healthz)
        application.router.add_get("/metrics", self._metrics)
        return application

    # -- Shared Signals --------------------------------------------------------------------

    async def _ssf(self, request: web.Request) -> web.Response:
        state = self.transmitters.get(request.match_info["name"])
        if state is None:
            return _error(404, "no transmitter of that name is configured")
        name = state.settings.name
        try:
            produced = await self._receive_set(state, request)
        except SetError as error:
            self._refused(name, error.code)
            return _rfc8935(error)
        except _KafkaUnavailableError:
            self._refused(name, "kafka_unavailable")
            return _error(503, "Kafka cannot take records now; retry", **{"Retry-After": "5"})
        except _TooLargeError:
            self._refused(name, "too_large")
            return _error(413, f"a SET is at most {MAX_BODY_BYTES // 1024} KiB")
        self.metrics.requests.labels(name, "accepted" if produced else "repeat").inc()
        return web.Response(status=202)

    async def _receive_set(self, state: _TransmitterState, request: web.Request) -> bool:
        settings = state.settings
        if state.token is not None and not authorized(
            request.headers.get("Authorization"), state.token
        ):
            raise SetError(
                "authentication_failed", "send Authorization: Bearer <token> as configured", 401
            )
        if request.content_type != SET_MEDIA_TYPE:
            raise SetError("invalid_request", f"Content-Type must be {SET_MEDIA_TYPE}")
        token = (await _body(request)).strip()
        now_s = self.clock()
        event = await self._verified(state, token, now_s)
        remembered = (settings.name, event.jti)
        if self.remembered.seen(remembered, now_s):
            return False
        signals: list[Signal] = []
        for event_type, body in event.events.items():
            mapper = MAPPERS.get(scim.scim_type(event_type))
            mapped = mapper(event, event_type, body, settings) if mapper is not None else []
            if not mapped:
                self.metrics.unmapped.labels(settings.name).inc()
            signals.extend(mapped)
        try:
            records = [self._record(signal) for signal in signals]
        except ContractError as error:
            raise SetError("invalid_request", f"maps to an invalid event: {error}") from None
        await self._produce(settings.name, signals, records)
        self.remembered.remember(remembered, event.issued_at_s + settings.max_age_s)
        return True

    async def _verified(self, state: _TransmitterState, token: bytes, now_s: float) -> Any:
        if state.keys is None:
            await self._refresh(state)
        if state.keys is None:
            raise SetError("invalid_key", "the transmitter's JWKS could not be fetched yet")
        try:
            return verify(token, state.settings, state.keys, now_s)
        except UnknownKeyError:
            if state.settings.jwks_url is None or not await self._refresh(state):
                raise
            return verify(token, state.settings, state.keys, now_s)

    async def _refresh(self, state: _TransmitterState) -> bool:
        """Fetch the JWKS again, at most every JWKS_REFRESH_S; whether it was fetched."""
        now_s = self.clock()
        if now_s - state.fetched_at_s < JWKS_REFRESH_S or state.settings.jwks_url is None:
            return False
        state.fetched_at_s = now_s
        url = str(state.settings.jwks_url)
        try:
            state.keys = KeySet(await self.fetch(url))
        except (TimeoutError, OSError, aiohttp.ClientError, ValueError) as error:
            log.warning(
                "transmitter %s: cannot fetch its JWKS from %s (%s); SETs signed with keys not "
                "yet held are refused with invalid_key",
                state.settings.name,
                echo(url),
                echo(str(error) or type(error).__name__),
            )
            return False
        return True

    # -- webhooks ------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.Response:
        found = self.webhooks.get(request.match_info["name"])
        if found is None:
            return _error(404, "no webhook source of that name is configured")
        webhook, secrets = found
        try:
            body = await _body(request)
            webhook_id = verify_signature(
                request.headers, body, secrets, webhook.tolerance_s, self.clock()
            )
            signal = map_payload(webhook, webhook_id, body)
            try:
                record = self._record(signal)
            except ContractError as error:
                raise WebhookError(
                    "invalid_request", f"maps to an invalid event: {error}"
                ) from None
            await self._produce(webhook.name, [signal], [record])
        except WebhookError as error:
            self._refused(webhook.name, error.reason)
            return _error(error.status, error.message)
        except _KafkaUnavailableError:
            self._refused(webhook.name, "kafka_unavailable")
            return _error(503, "Kafka cannot take records now; retry", **{"Retry-After": "5"})
        except _TooLargeError:
            self._refused(webhook.name, "too_large")
            return _error(413, f"a webhook body is at most {MAX_BODY_BYTES // 1024} KiB")
        self.metrics.requests.labels(webhook.name, "accepted").inc()
        return web.Response(status=202)

    # -- shared ---------------------------------------------------------------------------------

    def _record(self, signal: Signal) -> tuple[str, bytes, bytes]:
        """The record for a signal, checked by the contract's own decoder."""
        value = json.dumps(signal.value, separators=(",", ":"), sort_keys=True).encode()
        decode_event(signal.stream, value)
        return self.topics.for_stream(signal.stream), signal.key.encode(), value

    async def _produce(
        self, source: str, signals: list[Signal], records: list[tuple[str, bytes, bytes]]
    ) -> None:
        if not records:
            return
        try:
            await self.producer.send(records)
        except Exception as error:  # any failure: nothing acknowledged, the sender retries
            log.warning(
                "%s: Kafka did not acknowledge %d records (%s); answered 503",
                source,
                len(records),
                type(error).__name__,
            )
            raise _KafkaUnavailableError from None
        for signal in signals:
            self.metrics.records.labels(source, signal.stream).inc()

    def _refused(self, source: str, reason: str) -> None:
        self.metrics.requests.labels(source, "rejected").inc()
        self.metrics.rejected.labels(source, reason).inc()

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )


class _KafkaUnavailableError(Exception):
    """Kafka did not acknowledge: answer 503 so the sender retries."""


class _TooLargeError(Exception):
    """The body is larger than MAX_BODY_BYTES."""


async def _body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _TooLargeError from None


async def _fetch(url: str) -> bytes:
    timeout = aiohttp.ClientTimeout(total=JWKS_TIMEOUT_S)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, allow_redirects=False) as response,
    ):
        response.raise_for_status()
        data = await response.content.read(MAX_JWKS_BYTES + 1)
        if len(data) > MAX_JWKS_BYTES:
            raise ValueError(f"the JWKS is larger than {MAX_JWKS_BYTES // 1024} KiB")
        return data


class KafkaProducer:
    """`Producer` over aiokafka: every record sent, then every acknowledgement awaited."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def send(self, records: list[tuple[str, bytes, bytes]]) -> None:
        sent = [
            await self._producer.send(topic, value=value, key=key) for topic, key, value in records
        ]
        await asyncio.gather(*sent)


async def serve(
    settings: IngestSettings,
    bootstrap: str,
    security: KafkaSecurity,
    topics: Topics,
    registry: CollectorRegistry,
    environ: Mapping[str, str],
    stop: asyncio.Event,
) -> None:
    """Receive until `stop` is set."""
    producer = await start_producer(bootstrap, security)
    try:
        receiver = Receiver(settings, topics, KafkaProducer(producer), registry, environ)
        await receiver.start()
        runner = web.AppRunner(receiver.application(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
            try:
                await site.start()
            except OSError as error:
                raise BrokerError(
                    f"cannot listen on {settings.listen.host}:{settings.listen.port}: "
                    f"{error.strerror}; choose another listen.port"
                ) from None
            log.info(
                "accessdrift ingest listening on http://%s:%d",
                settings.listen.host,
                settings.listen.port,
            )
            await stop.wait()
        finally:
            await runner.cleanup()
    finally:
        await producer.stop()
