"""Where the engine's state lives between steps: one small interface, two implementations.

`MemoryStore` keeps live objects in dicts (replay, benchmarks, tests). `TableStore` keeps the
msgpack form in a mapping of bytes, which in the worker is a faust Table backed by its changelog;
with each identity's state it keeps an outbox of what the step decided to publish, so that the
decision and the state that remembers it are made durable in one write (see `streams/worker.py`).
Both pass one contract suite (`tests/streams/test_store.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Final, Protocol

import msgspec

from accessdrift.models.findings import encode_record
from accessdrift.models.messages import IdentityMessage
from accessdrift.models.state import (
    DeviceState,
    IdentityState,
    decode_device_state,
    encode_state,
)
from accessdrift.streams.lifecycle import Step


class IdentityStore(Protocol):
    """Identity states by identity id."""

    def get(self, identity_id: str) -> IdentityState | None: ...

    def put(self, step: Step) -> None:
        """Keep the step's new state, and what it decided to publish until it is delivered."""
        ...

    def states(self) -> Iterator[IdentityState]: ...


class DeviceStore(Protocol):
    """Device states by device id."""

    def get(self, device_id: str) -> DeviceState | None: ...

    def put(self, state: DeviceState) -> None: ...


class MemoryStore:
    """Identity and device states as live objects; what a step publishes goes out at once, so
    nothing waits in an outbox."""

    def __init__(self) -> None:
        self.identities: dict[str, IdentityState] = {}

    def get(self, identity_id: str) -> IdentityState | None:
        return self.identities.get(identity_id)

    def put(self, step: Step) -> None:
        self.identities[step.state.identity_id] = step.state

    def states(self) -> Iterator[IdentityState]:
        return iter(self.identities.values())


class MemoryDevices:
    def __init__(self) -> None:
        self.devices: dict[str, DeviceState] = {}

    def get(self, device_id: str) -> DeviceState | None:
        return self.devices.get(device_id)

    def put(self, state: DeviceState) -> None:
        self.devices[state.device_id] = state


#: Kinds of what waits in an outbox.
FINDING: Final = 0
MESSAGE: Final = 1

_MESSAGE_ENCODER: Final = msgspec.msgpack.Encoder()


class Outgoing(msgspec.Struct, array_like=True, gc=False):
    """A record waiting to be published: a finding or offboarding record (to the findings topic,
    as canonical JSON), or a message for another identity (to the identity inbox, msgpack)."""

    kind: int
    key: bytes
    value: bytes


class Stored(msgspec.Struct, array_like=True, gc=False):
    """A value of the identities table: the engine's state and what it has yet to publish."""

    state: IdentityState
    outbox: list[Outgoing]


_STORED_ENCODER: Final = msgspec.msgpack.Encoder()
_STORED_DECODER: Final = msgspec.msgpack.Decoder(Stored)


def encode_message(message: IdentityMessage) -> bytes:
    return _MESSAGE_ENCODER.encode(message)


def outgoing(step: Step) -> list[Outgoing]:
    """What a step publishes, in the order it happened: records, then messages."""
    key = step.state.identity_id.encode()
    out = [Outgoing(FINDING, key, encode_record(record)) for record in step.records]
    out.extend(
        Outgoing(MESSAGE, message.identity_id.encode(), encode_message(message))
        for message in step.messages
    )
    return out


class TableStore:
    """Identity states with their outboxes, as bytes in a mapping keyed by identity id bytes.

    Puts are kept as live objects until `flush` writes them, once per stream step: in the worker
    every write to the table is a changelog record, and a batch that touches one identity five
    times (a reconciliation re-asserting its grants) should cost one. Everything read here sees
    the puts not yet flushed.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        #: Put since the last flush.
        self._dirty: dict[bytes, Stored] = {}
        #: The outbox read with a state by `get`, for the `put` of the same step: the processing
        #: loop always gets before it puts, and the value need not be decoded twice.
        self._read_outbox: dict[bytes, list[Outgoing]] = {}
        #: What the last flush wrote with an outbox waiting, until it is delivered.
        self._flushed: dict[bytes, Stored] = {}

    def get(self, identity_id: str) -> IdentityState | None:
        key = identity_id.encode()
        dirty = self._dirty.get(key)
        if dirty is not None:
            return dirty.state
        stored = self._load(key)
        if stored is None:
            self._read_outbox[key] = []
            return None
        self._read_outbox[key] = stored.outbox
        return stored.state

    def peek(self, identity_id: str) -> IdentityState | None:
        """The state as flushed, read outside the processing loop (the API): changes nothing."""
        stored = self._load(identity_id.encode())
        return None if stored is None else stored.state

    def put(self, step: Step) -> None:
        key = step.state.identity_id.encode()
        dirty = self._dirty.get(key)
        if dirty is not None:
            outbox = dirty.outbox
        else:
            read = self._read_outbox.pop(key, None)
            if read is None:
                previous = self._load(key)
                read = [] if previous is None else previous.outbox
            outbox = read
        outbox.extend(outgoing(step))
        self._dirty[key] = Stored(step.state, outbox)

    def flush(self) -> list[str]:
        """Write what was put since the last flush; returns the identities whose outbox waits."""
        waiting = []
        for key, stored in self._dirty.items():
            self.table[key] = _STORED_ENCODER.encode(stored)
            if stored.outbox:
                self._flushed[key] = stored
                waiting.append(key.decode())
            else:
                self._flushed.pop(key, None)
        self._dirty.clear()
        self._read_outbox.clear()
        return waiting

    def states(self) -> Iterator[IdentityState]:
        for stored in self._dirty.values():
            yield stored.state
        for key, value in self.table.items():
            if key not in self._dirty:
                yield _STORED_DECODER.decode(value).state

    def outbox(self, identity_id: str) -> list[Outgoing]:
        """What the identity's steps decided to publish and is not known to be delivered."""
        key = identity_id.encode()
        stored = self._dirty.get(key) or self._flushed.get(key) or self._load(key)
        return [] if stored is None else stored.outbox

    def delivered(self, identity_id: str) -> None:
        """Everything in the identity's outbox was acknowledged: clear it (in the table at the
        next flush)."""
        key = identity_id.encode()
        self._read_outbox.pop(key, None)
        flushed = self._flushed.pop(key, None)
        stored = self._dirty.get(key) or flushed or self._load(key)
        if stored is not None and stored.outbox:
            stored.outbox.clear()
            self._dirty[key] = stored

    def entries(
        self, wanted: Callable[[bytes], bool]
    ) -> Iterator[tuple[bytes, IdentityState, bool]]:
        """(key, state, whether its outbox waits) for every identity whose key is `wanted`, as
        flushed (only those are decoded): the worker rebuilds its deadline indexes and
        redelivers outboxes from these after partitions are assigned."""
        for key, value in self.table.items():
            if wanted(key):
                stored = _STORED_DECODER.decode(value)
                yield key, stored.state, bool(stored.outbox)

    def _load(self, key: bytes) -> Stored | None:
        value = self.table.get(key)
        return None if value is None else _STORED_DECODER.decode(value)


class TableDevices:
    """Device states as bytes in a mapping keyed by device id bytes."""

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table

    def get(self, device_id: str) -> DeviceState | None:
        value = self.table.get(device_id.encode())
        return None if value is None else decode_device_state(value)

    def put(self, state: DeviceState) -> None:
        self.table[state.device_id.encode()] = encode_state(state)
