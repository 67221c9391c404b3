"""Replay: run the engine over recorded events with event time as the clock.

Each input line is `{"topic": "<stream>", "value": {<event>}}`. The clock moves forward to each
event's `occurred_at` as lines are read (never backwards) and, after the input, to `until` if
given; a deadline fires when the clock passes deadline + grace. A bad line is reported as
`FILE:LINE: reason` and every other line is still processed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from accessdrift.alerts.sinks import RecordSink
from accessdrift.models.clock import format_us
from accessdrift.models.errors import ContractError
from accessdrift.models.events import decode_line
from accessdrift.models.findings import FindingRecord, Record
from accessdrift.models.state import NEVER_US
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime

_PROGRESS_EVERY_LINES = 65_536
_PROGRESS_INTERVAL_S = 2.0


class _Split:
    """Findings to one sink, offboarding records to another."""

    def __init__(self, findings: RecordSink, evidence: RecordSink) -> None:
        self.findings = findings
        self.evidence = evidence

    def emit(self, record: Record) -> None:
        (self.findings if isinstance(record, FindingRecord) else self.evidence).emit(record)

    def flush(self) -> None:
        self.findings.flush()
        self.evidence.flush()


@dataclass
class ReplaySummary:
    """What a replay did, for the summary line and the exit status."""

    lines: int
    rejected: int
    ignored: int
    opened: int
    resolved: int
    offboarding: int
    pending: int
    clock_us: int

    def describe(self) -> str:
        clock = format_us(self.clock_us) if self.clock_us != NEVER_US else "no events"
        return (
            f"replay: {self.lines:,} lines read, {self.rejected:,} rejected, "
            f"{self.ignored:,} ignored as repeats or stale; "
            f"findings: {self.opened:,} opened, {self.resolved:,} resolved, "
            f"{self.opened - self.resolved:,} still open; "
            f"offboarding records: {self.offboarding:,}; "
            f"{self.pending:,} obligations pending at {clock}"
        )


def replay(
    inputs: Iterable[tuple[str, BinaryIO]],
    engine: Engine,
    findings: RecordSink,
    evidence: RecordSink,
    errors: TextIO,
    until_us: int | None = None,
    progress: TextIO | None = None,
) -> ReplaySummary:
    """Replay every line of every named input in order; report bad lines to `errors`.

    `inputs` pairs a display name with a binary stream. Returns the summary; writes nothing to
    `errors` but the bad lines (and progress, when a `progress` stream is given).
    """
    runtime = LocalRuntime(engine, _Split(findings, evidence))
    clock_us = NEVER_US
    lines = rejected = 0
    started = last_report = time.monotonic()
    for name, stream in inputs:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            lines += 1
            if progress is not None and lines % _PROGRESS_EVERY_LINES == 0:
                now = time.monotonic()
                if now - last_report >= _PROGRESS_INTERVAL_S:
                    last_report = now
                    rate = lines / (now - started)
                    progress.write(f"replay: {lines:,} lines ({rate:,.0f}/s), at {name}\n")
                    progress.flush()
            try:
                _, event = decode_line(line)
            except ContractError as error:
                rejected += 1
                errors.write(f"{name}:{line_number}: {error}\n")
                continue
            message = event.to_message()
            if message.occurred_at_us > clock_us:
                clock_us = message.occurred_at_us
                runtime.advance(clock_us)
            runtime.submit(message, clock_us)
    if until_us is not None and until_us > clock_us:
        clock_us = until_us
        runtime.advance(clock_us)
    runtime.sink.flush()
    counts = runtime.counts
    return ReplaySummary(
        lines=lines,
        rejected=rejected,
        ignored=counts.ignored,
        opened=counts.opened,
        resolved=counts.resolved,
        offboarding=counts.offboarding,
        pending=runtime.pending_obligations(),
        clock_us=clock_us,
    )
