"""`accessdrift report`: replay a history under a policy (and, for the what-if, under another)
and write the report `alerts/report.py` renders. The same replay as `accessdrift replay`, with
the records and the end of every obligation kept for the numbers."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from accessdrift.alerts.report import Summary, render, summarise
from accessdrift.models.findings import ObligationEnded, Record
from accessdrift.models.policy import Policy
from accessdrift.streams.engine import Engine
from accessdrift.streams.replay import replay

#: Opens the history's inputs afresh: each policy replays them from the start.
Inputs = Callable[[], contextlib.AbstractContextManager[list[tuple[str, BinaryIO]]]]


@dataclass(frozen=True)
class ReplayOptions:
    """How the history is replayed (`accessdrift replay`'s flags)."""

    grace_s: float
    until_us: int | None
    lateness_s: float
    max_ahead_s: float


class _Keep:
    """A record sink that keeps every record, for the report's numbers."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def emit(self, record: Record) -> None:
        self.records.append(record)

    def flush(self) -> None:
        """Nothing is buffered."""


def replay_summary(
    inputs: Inputs, policy: Policy, options: ReplayOptions, errors: TextIO
) -> tuple[Summary, int]:
    """The report's numbers for the history under `policy`, and how many lines were rejected."""
    kept = _Keep()
    ended: list[ObligationEnded] = []
    with inputs() as opened:
        result = replay(
            opened,
            Engine(policy, grace_s=options.grace_s),
            kept,
            kept,
            errors=errors,
            until_us=options.until_us,
            lateness_s=options.lateness_s,
            max_ahead_s=options.max_ahead_s,
            on_ended=ended.append,
        )
    return summarise(kept.records, ended, result.open_privileged), result.rejected


def write_report(
    inputs: Inputs,
    policy: tuple[str, Policy],
    compare: tuple[str, Policy] | None,
    options: ReplayOptions,
    out: Path,
    title: str,
    errors: TextIO,
) -> int:
    """Write the report to `out`; returns how many input lines were rejected (each reported to
    `errors` as FILE:LINE, once)."""
    summary, rejected = replay_summary(inputs, policy[1], options, errors)
    other = None
    if compare is not None:
        # The same lines are rejected under any policy: they were reported already.
        other = (compare[0], replay_summary(inputs, compare[1], options, io.StringIO())[0])
    out.write_text(render(summary, title, policy[0], other), encoding="utf-8")
    return rejected
