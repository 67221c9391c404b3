"""Replay: run the engine over recorded events with event time as the clock.

Each input line is `{"topic": "<stream>", "value": {<event>}}`. Several inputs (one per source:
`hr.jsonl mdm.jsonl idp.jsonl`) are merged by `occurred_at` as they are read, a streaming k-way
merge whose memory does not grow with the input:

* Each input may be out of order by up to `lateness_us`: an event waits in the merge until every
  input that could still hold an earlier one has been read past it (its watermark: the latest
  time read from it, minus the lateness; an input read to its end no longer holds anything
  back). Events are applied in time order; at one time, in a fixed order of the inputs' names,
  then in line order, so the arguments' order does not matter.
* An event later than that is still applied (the engine judges late events by event time), after
  the clock has moved on; the summary counts them.
* An event dated more than `max_ahead_us` after the latest one read from the same input (a device
  with a wrong clock, a typo of 2126 for 2026) is rejected as `FILE:LINE`, so it cannot move the
  clock. The first event of an input has nothing to be compared with and is taken as it is.

The clock is the time of the event being applied (never backwards) and, after the input, `until`
if given; a deadline fires when the clock passes deadline + grace. A bad line is reported as
`FILE:LINE: reason` and every other line is still processed.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO

from accessdrift.alerts.sinks import RecordSink
from accessdrift.models.clock import US_PER_S, format_duration_s, format_us
from accessdrift.models.decoding import decode_message_line
from accessdrift.models.errors import AccessdriftError, ContractError
from accessdrift.models.findings import FindingRecord, ObligationEnded, Record
from accessdrift.models.messages import InputMessage
from accessdrift.models.state import NEVER_US
from accessdrift.models.text import printable
from accessdrift.streams.engine import Engine
from accessdrift.streams.local import LocalRuntime

_PROGRESS_EVERY_LINES: Final = 65_536
_PROGRESS_INTERVAL_S: Final = 2.0
DEFAULT_LATENESS_S: Final = 3600
DEFAULT_MAX_AHEAD_S: Final = 30 * 86_400


class InputError(AccessdriftError):
    """An input could not be read (a usage error: exit status 2)."""


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
    late: int
    opened: int
    resolved: int
    offboarding: int
    pending: int
    clock_us: int
    #: Finding ids of the obligations about privileged access still open at the end.
    open_privileged: frozenset[str]

    def describe(self) -> str:
        clock = format_us(self.clock_us) if self.clock_us != NEVER_US else "no events"
        return (
            f"replay: {self.lines:,} lines read, {self.rejected:,} rejected, "
            f"{self.ignored:,} ignored as repeats or stale, {self.late:,} later than the "
            f"lateness bound; findings: {self.opened:,} opened, {self.resolved:,} resolved, "
            f"{self.opened - self.resolved:,} still open; "
            f"offboarding records: {self.offboarding:,}; "
            f"{self.pending:,} obligations pending at {clock}"
        )


class _Input:
    """One input being read: its name, its lines, and the latest event time read from it."""

    def __init__(self, name: str, stream: BinaryIO) -> None:
        self.name = name
        self.rank = 0
        self.lines = enumerate(stream, start=1)
        self.latest_us = NEVER_US

    def next_line(self) -> tuple[int, bytes] | None:
        try:
            return next(self.lines)
        except StopIteration:
            return None
        except OSError as error:
            raise InputError(
                f"cannot read {printable(self.name)}: {error.strerror or error}"
            ) from None


def _latest(source: _Input) -> int:
    return source.latest_us


class _Merge:
    """The k-way merge of the inputs by event time, within the lateness bound."""

    def __init__(
        self,
        inputs: Iterable[tuple[str, BinaryIO]],
        lateness_us: int,
        max_ahead_us: int,
        errors: TextIO,
    ) -> None:
        opened = [_Input(name, stream) for name, stream in inputs]
        # At equal times, inputs in the order of their names: not of the arguments.
        order = sorted(range(len(opened)), key=lambda i: (opened[i].name, i))
        self.inputs = [opened[i] for i in order]
        for rank, source in enumerate(self.inputs):
            source.rank = rank
        self.lateness_us = lateness_us
        self.max_ahead_us = max_ahead_us
        self.errors = errors
        self.buffer: list[tuple[int, int, int, InputMessage]] = []
        self.serial = 0
        self.lines = 0
        self.rejected = 0

    def events(self) -> Iterator[InputMessage]:
        """Every accepted event of every input, in merged order."""
        waiting = list(self.inputs)
        buffer, lateness_us = self.buffer, self.lateness_us
        while waiting:
            # Read from the input that holds the merge back the most.
            source = waiting[0] if len(waiting) == 1 else min(waiting, key=_latest)
            message = self._read(source)
            if message is None:
                waiting.remove(source)
                if not waiting:
                    break
            if len(waiting) == 1:
                watermark_us = waiting[0].latest_us - lateness_us
            else:
                watermark_us = min(i.latest_us for i in waiting) - lateness_us
            if message is not None:
                if not buffer and message.occurred_at_us <= watermark_us:
                    yield message  # nothing waits before it: no need to go through the heap
                    continue
                self.serial += 1
                entry = (message.occurred_at_us, source.rank, self.serial, message)
                heapq.heappush(buffer, entry)
            while buffer and buffer[0][0] <= watermark_us:
                yield heapq.heappop(buffer)[3]
        while buffer:
            yield heapq.heappop(buffer)[3]

    def _read(self, source: _Input) -> InputMessage | None:
        """The input's next accepted event; None at its end."""
        while (numbered := source.next_line()) is not None:
            line_number, line = numbered
            if not line.strip():
                continue
            self.lines += 1
            try:
                return self._decode(source, line)
            except ContractError as error:
                self.rejected += 1
                self.errors.write(f"{printable(source.name)}:{line_number}: {error}\n")
        return None

    def _decode(self, source: _Input, line: bytes) -> InputMessage:
        _, message = decode_message_line(line)
        at_us = message.occurred_at_us
        if source.latest_us != NEVER_US and at_us > source.latest_us + self.max_ahead_us:
            ahead = format_duration_s((at_us - source.latest_us) / US_PER_S)
            allowed = format_duration_s(self.max_ahead_us / US_PER_S)
            raise ContractError(
                "value.occurred_at",
                f"{format_us(at_us)} is {ahead} after the latest event of this input "
                f"({format_us(source.latest_us)}), more than the {allowed} allowed; fix the "
                "source's clock, or raise --max-ahead if the gap is real",
            )
        source.latest_us = max(source.latest_us, at_us)
        return message


def replay(
    inputs: Iterable[tuple[str, BinaryIO]],
    engine: Engine,
    findings: RecordSink,
    evidence: RecordSink,
    errors: TextIO,
    until_us: int | None = None,
    progress: TextIO | None = None,
    lateness_s: float = 0,
    max_ahead_s: float = DEFAULT_MAX_AHEAD_S,
    on_ended: Callable[[ObligationEnded], None] | None = None,
) -> ReplaySummary:
    """Replay every line of every input, merged by event time; report bad lines to `errors`.

    `inputs` pairs a display name with a binary stream. Returns the summary; writes nothing to
    `errors` but the bad lines (and progress, when a `progress` stream is given); `on_ended`
    hears the end of every obligation. Raises InputError when an input cannot be read.
    """
    runtime = LocalRuntime(engine, _Split(findings, evidence), on_ended)
    lateness_us = round(lateness_s * US_PER_S)
    merge = _Merge(inputs, lateness_us, round(max_ahead_s * US_PER_S), errors)
    clock_us = NEVER_US
    late = 0
    started = last_report = time.monotonic()
    reported_at = 0
    for message in merge.events():
        at_us = message.occurred_at_us
        if at_us > clock_us:
            clock_us = at_us
            runtime.advance(clock_us)
        elif at_us < clock_us - lateness_us:
            late += 1
        runtime.submit(message, clock_us)
        if progress is not None and merge.lines - reported_at >= _PROGRESS_EVERY_LINES:
            reported_at = merge.lines
            now = time.monotonic()
            if now - last_report >= _PROGRESS_INTERVAL_S:
                last_report = now
                rate = merge.lines / (now - started)
                clock = format_us(clock_us)
                progress.write(f"replay: {merge.lines:,} lines ({rate:,.0f}/s), clock at {clock}\n")
                progress.flush()
    if until_us is not None and until_us > clock_us:
        clock_us = until_us
        runtime.advance(clock_us)
    runtime.sink.flush()
    counts = runtime.counts
    return ReplaySummary(
        lines=merge.lines,
        rejected=merge.rejected,
        ignored=counts.ignored,
        late=late,
        opened=counts.opened,
        resolved=counts.resolved,
        offboarding=counts.offboarding,
        pending=runtime.pending_obligations(),
        clock_us=clock_us,
        open_privileged=runtime.open_privileged(),
    )
