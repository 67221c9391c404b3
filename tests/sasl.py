"""A stand-in SASL front for the embedded broker, which cannot serve SASL itself (Tansu 0.6
started with `--authentication` refuses the user its own `tansu user create` sends; without it,
it answers every mechanism with UnsupportedSaslMechanism).

It does what a Kafka broker's SASL listener does before the first other request: answers
ApiVersions (passed on to the broker), SaslHandshake (v1) and SaslAuthenticate (v0, v1) with
SCRAM-SHA-256, SCRAM-SHA-512 (RFC 5802, RFC 7677; the server checks the client's proof and
signs its own final message) and PLAIN (RFC 4616), and closes the connection on anything else
or on a failed exchange, as Kafka does. Once a client has authenticated, the connection is
spliced to the broker byte for byte. The broker advertises the front's address, so every
connection a client opens goes through it.

Each exchange is recorded (`exchanges`): mechanism, user and outcome, never a password.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from accessdrift.streams.broker import free_port

Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
HASHES: dict[str, str] = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
#: Kafka's minimum for SCRAM credentials.
ITERATIONS = 4096

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
NONE, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED = 0, 33, 34, 58


@dataclass(frozen=True)
class Exchange:
    mechanism: str
    user: str | None
    outcome: Literal["authenticated", "refused"]


class _RefusedError(Exception):
    """The exchange fails: answered with SASL_AUTHENTICATION_FAILED, then closed."""


@dataclass
class _Request:
    api_key: int
    api_version: int
    correlation_id: int
    body: bytes


def _parse(frame: bytes) -> _Request:
    api_key, api_version, correlation_id, client_id_length = struct.unpack_from(">hhih", frame)
    offset = 10 + max(client_id_length, 0)
    return _Request(api_key, api_version, correlation_id, frame[offset:])


def _string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def _bytes(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def _frame(correlation_id: int, body: bytes) -> bytes:
    payload = struct.pack(">i", correlation_id) + body
    return struct.pack(">i", len(payload)) + payload


def _attributes(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(",") if "=" in part)


def _saslname(name: str) -> str:
    return name.replace("=2C", ",").replace("=3D", "=")


@dataclass
class _Scram:
    """The server side of one SCRAM exchange (two client messages)."""

    mechanism: str
    users: dict[str, str]
    user: str | None = None
    _server_first: str = ""
    _client_first_bare: str = ""
    _gs2_header: str = ""
    _salted: bytes = b""
    _step: int = 0

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, HASHES[self.mechanism]).digest()

    def _hash(self, data: bytes) -> bytes:
        return hashlib.new(HASHES[self.mechanism], data).digest()

    def step(self, data: bytes) -> tuple[bytes, bool]:
        """The server's answer, and whether the exchange is complete."""
        message = data.decode()
        self._step += 1
        if self._step == 1:
            gs2_flag, authzid, bare = message.split(",", 2)
            if gs2_flag != "n" or authzid:
                raise _RefusedError("channel binding and authorisation ids are not supported")
            self._gs2_header = f"{gs2_flag},{authzid},"
            self._client_first_bare = bare
            attributes = _attributes(bare)
            self.user = _saslname(attributes.get("n", ""))
            # An unknown user gets a made-up salt, so the refusal comes at the proof, as Kafka's.
            password = self.users.get(self.user, os.urandom(16).hex())
            salt = hashlib.sha256(b"salt:" + self.user.encode()).digest()
            self._salted = hashlib.pbkdf2_hmac(
                HASHES[self.mechanism], password.encode(), salt, ITERATIONS
            )
            nonce = attributes["r"] + base64.b64encode(os.urandom(18)).decode()
            self._server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={ITERATIONS}"
            return self._server_first.encode(), False
        without_proof, _, proof = message.rpartition(",p=")
        attributes = _attributes(without_proof)
        expected_binding = base64.b64encode(self._gs2_header.encode()).decode()
        if attributes.get("c") != expected_binding:
            raise _RefusedError("channel binding does not match")
        if attributes.get("r") != _attributes(self._server_first)["r"]:
            raise _RefusedError("nonce does not match")
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = self._hmac(self._salted, b"Client Key")
        stored_key = self._hash(client_key)
        signature = self._hmac(stored_key, auth_message)
        offered = base64.b64decode(proof)
        recovered = bytes(a ^ b for a, b in zip(offered, signature, strict=False))
        if self.user not in self.users or not hmac.compare_digest(
            self._hash(recovered), stored_key
        ):
            raise _RefusedError("invalid credentials")
        server_key = self._hmac(self._salted, b"Server Key")
        verifier = base64.b64encode(self._hmac(server_key, auth_message)).decode()
        return f"v={verifier}".encode(), True


@dataclass
class SaslFront:
    """The front on 127.0.0.1:`port`, for the broker at `upstream` (host:port)."""

    upstream: str
    users: dict[str, str]
    mechanisms: tuple[Mechanism, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    port: int = field(default_factory=free_port)
    exchanges: list[Exchange] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> SaslFront:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", self.port)
            )
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=serve, name="sasl-front", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the SASL front did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def authenticated(self) -> Iterator[Exchange]:
        return (e for e in self.exchanges if e.outcome == "authenticated")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.upstream.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        try:
            if await self._authenticate(reader, writer, up_reader, up_writer):
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in (writer, up_writer):
                w.close()

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        """True once the client has authenticated; False when the connection is to close."""
        mechanism: str | None = None
        scram: _Scram | None = None
        while True:
            frame = await _read_frame(reader)
            request = _parse(frame)
            if request.api_key == API_VERSIONS:
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                response = await _read_frame(up_reader)
                writer.write(struct.pack(">i", len(response)) + response)
            elif request.api_key == SASL_HANDSHAKE and request.api_version == 1:
                (length,) = struct.unpack_from(">h", request.body)
                asked = request.body[2 : 2 + length].decode()
                enabled = b"".join(_string(m) for m in self.mechanisms)
                error = NONE if asked in self.mechanisms else UNSUPPORTED_SASL_MECHANISM
                body = struct.pack(">hi", error, len(self.mechanisms)) + enabled
                writer.write(_frame(request.correlation_id, body))
                if error != NONE:
                    self.exchanges.append(Exchange(asked, None, "refused"))
                    await writer.drain()
                    return False
                mechanism = asked
                scram = _Scram(asked, self.users) if asked in HASHES else None
            elif request.api_key == SASL_AUTHENTICATE and request.api_version in (0, 1):
                if mechanism is None:
                    await self._answer(writer, request, ILLEGAL_SASL_STATE, "no handshake", b"")
                    return False
                (length,) = struct.unpack_from(">i", request.body)
                data = request.body[4 : 4 + length]
                user: str | None = None
                try:
                    if scram is None:
                        _, user, password = data.decode().split("\0")
                        known = self.users.get(user)
                        if known is None or not hmac.compare_digest(known, password):
                            raise _RefusedError("invalid credentials")
                        answer, done = b"", True
                    else:
                        answer, done = scram.step(data)
                        user = scram.user
                except _RefusedError as refusal:
                    who = user if scram is None else scram.user
                    self.exchanges.append(Exchange(mechanism, who, "refused"))
                    message = (
                        f"Authentication failed during authentication due to {refusal} "
                        f"with SASL mechanism {mechanism}"
                    )
                    await self._answer(writer, request, SASL_AUTHENTICATION_FAILED, message, b"")
                    return False
                await self._answer(writer, request, NONE, None, answer)
                if done:
                    self.exchanges.append(Exchange(mechanism, user, "authenticated"))
                    return True
            else:
                # Kafka closes a connection that sends anything else before authenticating.
                return False
            await writer.drain()

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter,
        request: _Request,
        error: int,
        message: str | None,
        data: bytes,
    ) -> None:
        body = struct.pack(">h", error) + _string(message) + _bytes(data)
        if request.api_version >= 1:
            body += struct.pack(">q", 0)  # session_lifetime_ms: no re-authentication
        writer.write(_frame(request.correlation_id, body))
        await writer.drain()
