"""Transports: formatted records (bytes) to somewhere. Each implements `delivery.Transport`.

* `SplunkHec`: Splunk HTTP Event Collector, batched, with indexer acknowledgement when asked;
* `Syslog`: RFC 5424 messages over TCP (RFC 6587 octet counting), TLS (RFC 5425) or UDP
  (RFC 5426);
* `KafkaTopic`: a second Kafka topic, for SIEM connectors that read Kafka;
* `Webhook`: HTTPS POST signed the Standard Webhooks way.

Secrets (a HEC token, a webhook secret) are `SecretStr` and go only into the request that needs
them: never into a log line, an error or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from accessdrift.alerts.delivery import DeliveryError, http_error
from accessdrift.alerts.formats import PRODUCT, Envelope
from accessdrift.models.clock import US_PER_S, format_us
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.text import printable
from accessdrift.models.vocabulary import Severity

_JSON: Final = msgspec.json.Encoder()
#: How long one HTTP request may take before it counts as a network failure (and is retried).
DEFAULT_TIMEOUT_S: Final = 30.0


def _network_error(service: str, error: BaseException) -> DeliveryError:
    detail = printable(str(error) or type(error).__name__, 200)
    return DeliveryError(f"{service} unreachable: {detail} (will retry)", retryable=True)


def tls_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """A client TLS context: the system's trust store, or `ca_file`; `verify` False only for
    development against a self-signed receiver."""
    context = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class HttpClient:
    """One HTTP client session, opened on first use (it must be made inside the event loop)."""

    def __init__(self, context: ssl.SSLContext | None, timeout_s: float) -> None:
        self._context = context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._context if self._context else True)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def post(
        self, service: str, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """POST and return (status, body) of a 2xx answer; raise DeliveryError otherwise."""
        try:
            async with self.session.post(url, data=body, headers=headers) as response:
                content = await response.read()
                if 200 <= response.status < 300:
                    return response.status, content
                raise http_error(
                    service,
                    response.status,
                    response.reason or "",
                    response.headers.get("Retry-After"),
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise _network_error(service, error) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- Splunk HEC ----------------------------------------------------------------------------------


class SplunkHec:
    """Splunk HTTP Event Collector: `POST /services/collector/event` with one JSON event object
    per record, many per request, authorised by `Authorization: Splunk <token>`.

    With `ack`, the batch counts as delivered only once the indexers acknowledge it (the
    collector's "indexer acknowledgement", polled on `/services/collector/ack` in this
    transport's channel); a batch not acknowledged within `ack_timeout_s` is sent again.
    """

    def __init__(
        self,
        url: str,
        token: SecretStr,
        *,
        index: str | None = None,
        sourcetype: str | None = None,
        ack: bool = False,
        ack_timeout_s: float = 120.0,
        ack_poll_s: float = 1.0,
        batch: int = 100,
        context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.max_batch = batch
        self._base = url.rstrip("/")
        self._token = token
        self._index = index
        self._sourcetype = sourcetype
        self._ack = ack
        self._ack_timeout_s = ack_timeout_s
        self._ack_poll_s = ack_poll_s
        self._channel = str(uuid.uuid4())
        self._http = HttpClient(context, timeout_s)

    def _headers(self) -> dict[str, str]:
        headers = {
            "Authorization": f"Splunk {self._token.get_secret_value()}",
            "Content-Type": "application/json",
        }
        if self._ack:
            headers["X-Splunk-Request-Channel"] = self._channel
        return headers

    def _event(self, item: Envelope) -> bytes:
        event: dict[str, Any] = {
            "time": round(item.time_us / US_PER_S, 3),
            "source": PRODUCT,
            "event": msgspec.Raw(item.body) if item.is_json else item.body.decode(),
            "fields": {"record_id": item.id},
        }
        if self._sourcetype is not None:
            event["sourcetype"] = self._sourcetype
        if self._index is not None:
            event["index"] = self._index
        return _JSON.encode(event)

    async def send(self, batch: Sequence[Envelope]) -> None:
        body = b"\n".join(self._event(item) for item in batch)
        _, answer = await self._http.post(
            "Splunk HEC", f"{self._base}/services/collector/event", body, self._headers()
        )
        if self._ack:
            await self._wait_for_ack(answer)

    async def _wait_for_ack(self, answer: bytes) -> None:
        try:
            ack_id = int(msgspec.json.decode(answer)["ackId"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            raise DeliveryError(
                "Splunk HEC accepted the batch without an ackId: turn indexer acknowledgement on "
                "for the token, or set ack = false",
                retryable=False,
            ) from None
        deadline = time.monotonic() + self._ack_timeout_s
        query = _JSON.encode({"acks": [ack_id]})
        while time.monotonic() < deadline:
            _, status = await self._http.post(
                "Splunk HEC", f"{self._base}/services/collector/ack", query, self._headers()
            )
            try:
                if msgspec.json.decode(status)["acks"][str(ack_id)] is True:
                    return
            except (msgspec.DecodeError, KeyError, TypeError):
                pass
            await asyncio.sleep(self._ack_poll_s)
        raise DeliveryError(
            f"Splunk HEC did not acknowledge batch {ack_id} within {self._ack_timeout_s:g} s "
            "(will resend)",
            retryable=True,
        )

    async def close(self) -> None:
        await self._http.close()


# -- syslog --------------------------------------------------------------------------------------

SyslogProtocol = Literal["tcp", "tls", "udp"]
#: RFC 5424 facility codes a security feed is usually filed under.
FACILITIES: Final = {"auth": 4, "authpriv": 10, "local0": 16, "local4": 20}
SyslogFacility = Literal["auth", "authpriv", "local0", "local4"]
#: RFC 5424 severity per finding severity: 2 critical, 3 error, 4 warning, 5 notice; records
#: that report good news (a resolution, offboarding evidence) are 6 informational.
SYSLOG_SEVERITY: Final[dict[Severity, int]] = {"critical": 2, "high": 3, "medium": 4, "low": 5}
SYSLOG_INFO: Final = 6
#: The largest UDP payload over IPv4.
MAX_DATAGRAM_BYTES: Final = 65_507


def _syslog_token(value: str, limit: int) -> str:
    """A HOSTNAME/APP-NAME/MSGID: printable US-ASCII without spaces, or the nil value `-`."""
    text = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return text or "-"


class Syslog:
    """RFC 5424 syslog. TCP and TLS use octet-counting framing (`LEN SP MSG`), so a message may
    hold any byte; UDP sends one message per datagram.

    TCP acknowledges nothing above the transport: a message counts as delivered once written to
    a connection that had not failed. A broken connection is opened again on the next send.
    """

    def __init__(
        self,
        host: str,
        port: int,
        protocol: SyslogProtocol,
        *,
        facility: SyslogFacility = "authpriv",
        app_name: str = PRODUCT,
        hostname: str | None = None,
        context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        batch: int = 500,
    ) -> None:
        self.max_batch = batch
        self._host, self._port, self._protocol = host, port, protocol
        self._facility = FACILITIES[facility]
        self._app = _syslog_token(app_name, 48)
        self._hostname = _syslog_token(hostname or socket.gethostname(), 255)
        self._context = context
        self._timeout_s = timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._udp: asyncio.DatagramTransport | None = None

    def message(self, item: Envelope) -> bytes:
        """One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG`."""
        severity = SYSLOG_INFO
        if item.opening and item.severity is not None:
            severity = SYSLOG_SEVERITY[item.severity]
        msgid = "finding" if item.severity is not None else "offboarding"
        head = (
            f"<{self._facility * 8 + severity}>1 {format_us(item.time_us)} {self._hostname} "
            f"{self._app} - {msgid} - "
        )
        return head.encode() + item.body

    async def send(self, batch: Sequence[Envelope]) -> None:
        service = f"syslog {self._protocol}://{self._host}:{self._port}"
        try:
            if self._protocol == "udp":
                messages = [self.message(item) for item in batch]
                for message in messages:
                    if len(message) > MAX_DATAGRAM_BYTES:
                        raise DeliveryError(
                            f"{service}: a message of {len(message)} bytes does not fit in a "
                            "UDP datagram; use protocol tcp or tls",
                            retryable=False,
                        )
                udp = await self._datagrams()
                for message in messages:
                    udp.sendto(message)
                return
            writer = await self._stream()
            for item in batch:
                message = self.message(item)
                writer.write(b"%d %s" % (len(message), message))
            await asyncio.wait_for(writer.drain(), self._timeout_s)
        except (OSError, TimeoutError, ssl.SSLError) as error:
            await self.close()
            raise _network_error(service, error) from None

    async def _stream(self) -> asyncio.StreamWriter:
        if self._writer is not None and self._writer.is_closing():
            await self.close()
        if self._writer is None:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._context if self._protocol == "tls" else None,
                    server_hostname=self._host if self._protocol == "tls" else None,
                ),
                self._timeout_s,
            )
            self._writer = writer
        return self._writer

    async def _datagrams(self) -> asyncio.DatagramTransport:
        if self._udp is None:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=(self._host, self._port)
            )
        return self._udp

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            # Already broken: closing is all that is left to do.
            with contextlib.suppress(OSError, ssl.SSLError):
                await self._writer.wait_closed()
            self._writer = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None


# -- Kafka ---------------------------------------------------------------------------------------


class KafkaTopic:
    """Another Kafka topic, keyed by finding id (so one finding's records stay in order), for
    SIEM connectors that read Kafka. Delivered once the broker acknowledged every record."""

    def __init__(
        self, bootstrap: str, security: KafkaSecurity, topic: str, *, batch: int = 500
    ) -> None:
        self.max_batch = batch
        self._bootstrap = bootstrap
        self._security = security
        self._topic = topic
        self._producer: Any = None

    async def send(self, batch: Sequence[Envelope]) -> None:
        service = f"Kafka topic {self._topic}"
        try:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    **self._security.client_options(),
                )
                await producer.start()
                self._producer = producer
            pending = [
                await self._producer.send(self._topic, item.body, key=item.key.encode())
                for item in batch
            ]
            for future in pending:
                await future
        except (KafkaError, OSError) as error:
            await self.close()
            raise _network_error(service, error) from None

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


# -- webhook -------------------------------------------------------------------------------------


def webhook_key(secret: SecretStr) -> bytes:
    """The signing key of a Standard Webhooks secret: the base64 after `whsec_`, or the secret's
    bytes as they are when it has no prefix."""
    value = secret.get_secret_value()
    if value.startswith("whsec_"):
        return base64.b64decode(value.removeprefix("whsec_"))
    return value.encode()


def webhook_signature(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` (Standard Webhooks)."""
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Webhook:
    """HTTPS POST of each record, signed the Standard Webhooks way: `webhook-id` (the record's id,
    the same on a redelivery, so the receiver can drop repeats), `webhook-timestamp` (Unix
    seconds at sending) and `webhook-signature`."""

    max_batch: Final = 1

    def __init__(
        self,
        url: str,
        secret: SecretStr,
        *,
        context: ssl.SSLContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self._url = url
        self._key = webhook_key(secret)
        self._wall_s = wall_s
        self._http = HttpClient(context, timeout_s)

    async def send(self, batch: Sequence[Envelope]) -> None:
        for item in batch:
            timestamp_s = int(self._wall_s())
            headers = {
                "Content-Type": "application/json" if item.is_json else "text/plain",
                "webhook-id": item.id,
                "webhook-timestamp": str(timestamp_s),
                "webhook-signature": webhook_signature(self._key, item.id, timestamp_s, item.body),
            }
            await self._http.post("webhook", self._url, item.body, headers)

    async def close(self) -> None:
        await self._http.close()
