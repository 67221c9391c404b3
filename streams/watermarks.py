"""Event time for the live runtime: per-channel watermarks and the clock deadlines fire against.

Anchored on Apache Flink's watermarks (per-partition, idle sources) and Kafka Streams' stream
time. A deadline must not fire while the input that could still meet it is unread, so the clock of
an inbox partition is the minimum over every *channel* that can still bring it something:

* each partition of each input topic (the event time of the latest record read from it; a
  partition read up to its end offset is idle: in wall-clock mode it counts as being at wall time,
  in event-clock mode it holds nothing back once it has stayed at its end for a moment);
* each partition of the device inbox (device events reach identities one hop later) and each
  partition of the identity inbox (owners and their non-human identities message each other):
  each reports how far everything before it has been processed.

Reports travel in band: every worker periodically sends a `Mark` with what it knows of the
channels it owns to every inbox partition, after the records it forwarded, so a partition that
has read a mark has read everything its channels sent before it. The clock never goes back and is
never ahead of wall time; it is the same on every worker, since all derive it from the same reports.

This module is pure: the worker feeds it reports and reads clocks (`streams/worker.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import msgspec

from accessdrift.models.state import NEVER_US

ClockMode = Literal["wall", "event"]
ChannelKind = Literal["input", "device", "identity"]


class Report(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a worker knows of one channel: how far it has been read (or processed), and whether it
    is idle (read to its end). An input partition's report also says what the idleness rests on:
    the partition's end offset and the reader's position when it reported (-1 for inboxes)."""

    kind: ChannelKind
    topic: str
    partition: int
    watermark_us: int
    idle: bool
    end_offset: int = -1
    position: int = -1

    @property
    def seen(self) -> tuple[int, int]:
        """How much of the partition the report knows of: reports are ordered by it."""
        return (self.end_offset, self.position)


class Mark(msgspec.Struct, frozen=True, tag=True, gc=False):
    """A watermark report, sent in band to every inbox partition: the partition counts of the
    input topics (so that a receiver knows every channel it must hear from) and the reports of
    the channels the sending worker owns."""

    topics: dict[str, int]
    reports: list[Report]


def combine(
    values: Iterable[tuple[int, bool]],
    mode: ClockMode,
    wall_us: int,
    seen: Iterable[tuple[int, bool]] | None = None,
) -> tuple[int, bool]:
    """One watermark for several channels: (watermark, idle).

    Wall clock: the minimum (an idle channel reports the wall time it was idle at), never ahead of
    `wall_us`. Event clock: the minimum over the channels that are not idle; when all are idle,
    the latest event time among `seen` (default: all of them). A partition passes the input
    channels it has read marks about as `seen`: an inbox channel's report may rest on a mark this
    partition has not read yet, so it can hold the clock back but never move it on.
    """
    values = list(values)
    idle = all(is_idle for _, is_idle in values)
    if mode == "wall":
        return min([wall_us, *(watermark for watermark, _ in values)]), idle
    busy = [watermark for watermark, is_idle in values if not is_idle]
    if busy:
        return min(busy), False
    latest = values if seen is None else seen
    return max((watermark for watermark, _ in latest), default=NEVER_US), True


@dataclass
class Watermarks:
    """What one inbox partition knows of every channel that feeds it, and the clock that follows.

    `inputs` names the input topics whose partitions feed this inbox directly, `device_inputs`
    those that feed the device inbox; `device_channels` and `identity_channels` say how many
    device-inbox and identity-inbox partitions feed this one (0 for none). A channel nobody has
    reported on holds the clock back (None: not known yet).
    """

    mode: ClockMode
    inputs: tuple[str, ...]
    device_inputs: tuple[str, ...]
    device_channels: int
    identity_channels: int
    partitions_of: dict[str, int] = field(default_factory=dict)
    channels: dict[tuple[ChannelKind, str, int], tuple[int, bool]] = field(default_factory=dict)
    #: What the report an input channel's idleness follows knew of the partition (`Report.seen`).
    seen: dict[tuple[ChannelKind, str, int], tuple[int, int]] = field(default_factory=dict)
    clock_us: int = NEVER_US

    def update(self, mark: Mark) -> None:
        """Take in a report: watermarks only move forward. Idleness is the word of the report
        that knows most: for an input partition, the one that saw the furthest end offset, then
        the furthest position (reports of two owners, before and after a rebalance, arrive in
        any order; a new owner that finds the partition at its end is idle even though it read
        nothing, and so knows no event time). For an inbox, a report behind what is known (sent
        before it, or by a worker that owned the channel before a rebalance) may say busy,
        never idle."""
        for topic, count in mark.topics.items():
            if count > self.partitions_of.get(topic, 0):
                self.partitions_of[topic] = count
        for report in mark.reports:
            key = (report.kind, report.topic, report.partition)
            known = self.channels.get(key)
            if known is None:
                self.channels[key] = (report.watermark_us, report.idle)
                self.seen[key] = report.seen
                continue
            watermark_us = max(known[0], report.watermark_us)
            if report.kind == "input":
                known_seen = self.seen.get(key, (-1, -1))
                if report.seen > known_seen:
                    idle = report.idle
                    self.seen[key] = report.seen
                else:
                    idle = known[1] or (report.seen == known_seen and report.idle)
            elif report.watermark_us >= known[0]:
                idle = report.idle
            else:
                idle = known[1] and report.idle
            self.channels[key] = (watermark_us, idle)

    def set_own(self, partition: int, value: tuple[int, bool]) -> None:
        """This partition's own progress, as a channel of itself."""
        self.channels[("identity", "", partition)] = value

    def _reported(self, keys: list[tuple[ChannelKind, str, int]]) -> list[tuple[int, bool]] | None:
        values = []
        for key in keys:
            value = self.channels.get(key)
            if value is None:
                return None
            values.append(value)
        return values

    def _inputs(self, topics: tuple[str, ...]) -> list[tuple[int, bool]] | None:
        keys: list[tuple[ChannelKind, str, int]] = []
        for topic in topics:
            count = self.partitions_of.get(topic)
            if count is None:
                return None
            keys.extend(("input", topic, partition) for partition in range(count))
        return self._reported(keys)

    def _inboxes(
        self, kind: ChannelKind, count: int, fed: tuple[int, bool]
    ) -> list[tuple[int, bool]] | None:
        """The reports of `count` inbox partitions, each judged against `fed`, what this
        partition knows of the inputs that feed them. An inbox reported idle has processed what
        its inputs held when it reported; in event time, if they have moved on since, it may
        hold unprocessed events, so it counts as busy at its watermark until it reports again
        (idle, it would hold nothing back)."""
        values = self._reported([(kind, "", partition) for partition in range(count)])
        if values is None or self.mode == "wall":
            return values
        fed_us = fed[0]
        return [(us, False) if idle and us < fed_us else (us, idle) for us, idle in values]

    def _values(
        self, wall_us: int, with_identities: bool
    ) -> tuple[list[tuple[int, bool]], list[tuple[int, bool]]] | None:
        """Every channel's value, and the input channels' (direct and through the device inbox)
        alone; None while a channel has not reported."""
        values = self._inputs(self.inputs)
        if values is None:
            return None
        seen = list(values)
        if self.device_channels:
            device_inputs = self._inputs(self.device_inputs)
            if device_inputs is None:
                return None
            seen.extend(device_inputs)
            devices = self._inboxes(
                "device", self.device_channels, combine(device_inputs, self.mode, wall_us)
            )
            if devices is None:
                return None
            values.extend(devices)
        if with_identities and self.identity_channels:
            identities = self._inboxes(
                "identity", self.identity_channels, combine(values, self.mode, wall_us, seen)
            )
            if identities is None:
                return None
            values.extend(identities)
        return values, seen

    def progress(self, wall_us: int) -> tuple[int, bool] | None:
        """How far this partition's inputs (not other identity partitions) have been processed:
        what it reports of itself to the others. None until every channel has reported."""
        found = self._values(wall_us, with_identities=False)
        return None if found is None else combine(found[0], self.mode, wall_us, found[1])

    def advance(self, wall_us: int) -> int | None:
        """The clock after the reports taken in so far: the minimum over every channel, never
        backwards, never past wall time. None until every channel has reported (and no clock
        was restored)."""
        found = self._values(wall_us, with_identities=True)
        if found is not None:
            values, seen = found
            watermark_us, _ = combine(values, self.mode, wall_us, seen)
            self.clock_us = max(self.clock_us, min(watermark_us, wall_us))
        return None if self.clock_us == NEVER_US else self.clock_us

    def restore(self, clock_us: int) -> None:
        """A clock kept from before a restart: the floor the clock starts from."""
        self.clock_us = max(self.clock_us, clock_us)


#: Event clock: how long a partition must stay read to its end before it counts as idle (holds
#: nothing back). A producer writes one partition's records a little after another's (its batches
#: leave per partition), so a partition at its end for a moment may have records on the way that
#: are older than what the others already delivered; passing them would fire deadlines early.
#: Kafka Streams waits the same way (`max.task.idle.ms`), Flink has `withIdleness`.
EVENT_IDLE_AFTER_S: Final = 2.0


@dataclass
class InputProgress:
    """How far one worker has read each input partition it owns: the event time of the latest
    record. Ingest keeps it as it forwards records (`streams/ingest.py`)."""

    latest_us: dict[tuple[str, int], int] = field(default_factory=dict)
    #: Since when (monotonic seconds) each partition has been read to its end.
    at_end_since_s: dict[tuple[str, int], float] = field(default_factory=dict)

    def read(self, topic: str, partition: int, latest_us: int) -> None:
        """Records up to `latest_us` were read from the partition and forwarded."""
        key = (topic, partition)
        if latest_us > self.latest_us.get(key, NEVER_US):
            self.latest_us[key] = latest_us

    def forget(self, topic: str, partition: int) -> None:
        """The partition is no longer this worker's to report."""
        self.latest_us.pop((topic, partition), None)
        self.at_end_since_s.pop((topic, partition), None)

    def report(
        self,
        topic: str,
        partition: int,
        end_offset: int,
        position: int,
        mode: ClockMode,
        wall_us: int,
        now_s: float,
    ) -> Report | None:
        """What to report of one owned input partition, given its end offset, the offset of
        the next record to read and the monotonic time `now_s`. None when nothing can be said
        yet (nothing read, records waiting or maybe on the way): the channel then holds the
        clock back, which is safe."""
        key = (topic, partition)
        latest_us = self.latest_us.get(key)
        if position >= end_offset:
            if mode == "wall":
                return Report("input", topic, partition, wall_us, True, end_offset, position)
            since_s = self.at_end_since_s.setdefault(key, now_s)
            if now_s - since_s >= EVENT_IDLE_AFTER_S:
                seen_us = NEVER_US if latest_us is None else latest_us
                return Report("input", topic, partition, seen_us, True, end_offset, position)
        else:
            self.at_end_since_s.pop(key, None)
        if latest_us is None:
            return None
        return Report("input", topic, partition, latest_us, False, end_offset, position)
