"""What travels on the worker's internal topics: batches of engine messages, and marks.

faust's cost is per Kafka message (about 140 µs here), so the worker never sends one message per
event between its own stages: ingest groups what it read by inbox partition and sends each
partition one `Batch` of msgpack-encoded messages; the agent that owns the partition applies the
whole batch in one stream step. The batch goes to the partition the table's partitioner gives
its keys, so every table write of the step lands on the changelog partition of its key.

A batch is kept under `MAX_BATCH_BYTES` so that it fits any broker's default message size.
`Batches` builds them from messages encoded once (`msgspec.Raw`, no second encoding).
"""

from __future__ import annotations

from typing import Final, Generic, TypeVar

import msgspec
from aiokafka.partitioner import DefaultPartitioner

from accessdrift.models.messages import DevicePosture, IdentityMessage
from accessdrift.streams.watermarks import Mark

#: Under the 1 MB default of Kafka's `message.max.bytes` and aiokafka's `max_request_size`, with
#: room for the record's own overhead.
MAX_BATCH_BYTES: Final = 512 * 1024

_IDENTITY_TAG: Final = "identity-batch"
_DEVICE_TAG: Final = "device-batch"


class IdentityBatch(msgspec.Struct, frozen=True, tag=_IDENTITY_TAG, gc=False):
    """Messages for identities of one identity-inbox partition, in the order they were read."""

    messages: list[IdentityMessage]


class DeviceBatch(msgspec.Struct, frozen=True, tag=_DEVICE_TAG, gc=False):
    """Posture events for devices of one device-inbox partition, in the order they were read."""

    messages: list[DevicePosture]


class _EncodedIdentityBatch(msgspec.Struct, frozen=True, tag=_IDENTITY_TAG, gc=False):
    messages: list[msgspec.Raw]


class _EncodedDeviceBatch(msgspec.Struct, frozen=True, tag=_DEVICE_TAG, gc=False):
    messages: list[msgspec.Raw]


IDENTITY_INBOX: Final = msgspec.msgpack.Decoder(IdentityBatch | Mark)
DEVICE_INBOX: Final = msgspec.msgpack.Decoder(DeviceBatch | Mark)

_ENCODER: Final = msgspec.msgpack.Encoder()
_PARTITIONER: Final = DefaultPartitioner()
#: Keys whose partition is kept: about 10 MB at most.
_PARTITIONS_KEPT: Final = 100_000

M = TypeVar("M", bound=IdentityMessage | DevicePosture)


def encode(value: IdentityMessage | DevicePosture | Mark) -> bytes:
    return _ENCODER.encode(value)


class Partitioner:
    """The partition of a key in a topic of `partitions` partitions: Kafka's default (murmur2),
    which is what faust's tables use for their keys. aiokafka's murmur2 is pure Python (a few
    µs a key) and the same identities come back batch after batch, so recent answers are kept."""

    def __init__(self, partitions: int) -> None:
        self._all = list(range(partitions))
        self._known: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        partition = self._known.get(key)
        if partition is None:
            if len(self._known) >= _PARTITIONS_KEPT:
                self._known.clear()
            partition = self._known[key] = _PARTITIONER(key, self._all, self._all)
        return partition


class Batches(Generic[M]):
    """Encoded messages grouped by partition, cut into values of at most `MAX_BATCH_BYTES`."""

    def __init__(self, device: bool, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self._wrap = _EncodedDeviceBatch if device else _EncodedIdentityBatch
        self._max_bytes = max_bytes
        self._open: dict[int, tuple[list[msgspec.Raw], int]] = {}
        self._done: list[tuple[int, bytes]] = []

    def __bool__(self) -> bool:
        return bool(self._open or self._done)

    def add(self, partition: int, message: M) -> None:
        self.add_encoded(partition, _ENCODER.encode(message))

    def add_encoded(self, partition: int, encoded: bytes) -> None:
        """A message already in its msgpack form (an outbox keeps them so)."""
        messages, size = self._open.get(partition, ([], 0))
        if messages and size + len(encoded) > self._max_bytes:
            self._done.append((partition, _ENCODER.encode(self._wrap(messages))))
            messages, size = [], 0
        messages.append(msgspec.Raw(encoded))
        self._open[partition] = (messages, size + len(encoded))

    def take(self) -> list[tuple[int, bytes]]:
        """Every batch as (partition, value), each partition's in the order added; empties this."""
        done = self._done
        done.extend(
            (partition, _ENCODER.encode(self._wrap(messages)))
            for partition, (messages, _) in self._open.items()
        )
        self._open, self._done = {}, []
        return done
