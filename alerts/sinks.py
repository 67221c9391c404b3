"""Record sinks: where an in-process run (replay, the benchmarks, the demo's printout) writes
records as they happen, synchronously: JSON lines or text lines to a local stream.

Delivery across a network (SIEMs, pagers) is asynchronous, retried and acknowledged: that is
`alerts/delivery.py`'s `Sink`, fed from the findings topic by `accessdrift notify`.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol, TextIO

from accessdrift.models.clock import format_us
from accessdrift.models.findings import FindingRecord, Record, encode_record, happened_at_us
from accessdrift.models.text import printable


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


class TextSink:
    """Writes each record as one line for a person reading a terminal.

    `2026-03-03T18:05:00Z  OPEN      critical  [187fb9c2]  alice was terminated at ...`
    The time is when the record happened: detection for an open finding, the landing change for
    a resolved one, completion for offboarding evidence. Everything the input put in the line
    is made printable, so that no id can forge a line or drive the terminal.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def emit(self, record: Record) -> None:
        if isinstance(record, FindingRecord):
            at = format_us(happened_at_us(record))
            line = (
                f"{at}  {record.status.upper():<9} {record.severity:<9} "
                f"[{record.finding_id[:8]}]  {printable(record.summary)}"
            )
        else:
            late = record.revoked_late
            line = (
                f"{format_us(record.completed_at_us)}  {'EVIDENCE':<9} {'':<9} "
                f"[{record.offboarding_id[:8]}]  Offboarding of {printable(record.identity_id)} "
                f"(terminated {format_us(record.terminated_at_us)}) is complete: "
                f"{len(record.entitlements)} entitlement(s) revoked, {late} late."
            )
        self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()
