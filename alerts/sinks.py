"""Record sinks: one small protocol, many destinations.

The engine produces records; a sink delivers them. Replay writes JSON lines to a file or standard
output; later sinks (Kafka, SIEM feeds, pagers) implement the same protocol and pass the same
contract tests.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol, TextIO

from accessdrift.models.findings import FindingRecord, Record, encode_record


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
    a resolved one, completion for offboarding evidence.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def emit(self, record: Record) -> None:
        if isinstance(record, FindingRecord):
            at = record.resolved_at if record.status == "resolved" else record.detected_at
            line = (
                f"{at}  {record.status.upper():<9} {record.severity:<9} "
                f"[{record.finding_id[:8]}]  {record.summary}"
            )
        else:
            late = sum(1 for entry in record.entitlements if not entry.within_window)
            line = (
                f"{record.completed_at}  {'EVIDENCE':<9} {'':<9} [{record.offboarding_id[:8]}]  "
                f"Offboarding of {record.identity_id} (terminated {record.terminated_at}) is "
                f"complete: {len(record.entitlements)} entitlement(s) revoked, {late} late."
            )
        self._stream.write(line + "\n")

    def flush(self) -> None:
        self._stream.flush()
