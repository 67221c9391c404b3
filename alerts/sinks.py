"""Record sinks: one small protocol, many destinations.

The engine produces records; a sink delivers them. Replay writes JSON lines to a file or standard
output; later sinks (Kafka, SIEM feeds, pagers) implement the same protocol and pass the same
contract tests.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from accessdrift.models.findings import Record, encode_record


class RecordSink(Protocol):
    """Somewhere records go. `emit` is called in the order records happen; `flush` makes every
    record emitted so far durable or visible downstream."""

    def emit(self, record: Record) -> None: ...

    def flush(self) -> None: ...


class JsonLinesSink:
    """Writes each record as one line of stable JSON to a binary stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def emit(self, record: Record) -> None:
        self._stream.write(encode_record(record) + b"\n")

    def flush(self) -> None:
        self._stream.flush()


class DiscardSink:
    """Drops every record (for outputs nobody asked for)."""

    def emit(self, record: Record) -> None:
        del record

    def flush(self) -> None:
        return None
