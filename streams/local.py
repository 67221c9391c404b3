"""The engine run in one process over in-memory state: the shell behind replay and benchmarks.

It holds every identity's and device's state, delivers the messages the engine sends between
identities (first in, first out, before the next input), and keeps the deadline index so that
`advance` visits only identities with something due.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from accessdrift.alerts.sinks import RecordSink
from accessdrift.models.findings import FindingRecord, Record
from accessdrift.models.messages import DevicePosture, IdentityMessage, InputMessage
from accessdrift.models.state import PENDING, DeviceState, IdentityState
from accessdrift.streams.deadlines import DeadlineIndex
from accessdrift.streams.devices import route_device
from accessdrift.streams.engine import Engine, Step


@dataclass
class Counts:
    """What a run has done so far."""

    applied: int = 0
    ignored: int = 0
    opened: int = 0
    resolved: int = 0
    offboarding: int = 0


class LocalRuntime:
    """Runs the engine over in-memory state, sending every record to `sink` as it happens."""

    def __init__(self, engine: Engine, sink: RecordSink) -> None:
        self.engine = engine
        self.sink = sink
        self.identities: dict[str, IdentityState] = {}
        self.devices: dict[str, DeviceState] = {}
        self.deadlines = DeadlineIndex()
        self.counts = Counts()

    def submit(self, message: InputMessage, now_us: int) -> bool:
        """Apply one input message at `now_us`, with everything it sets off; False if ignored."""
        messages: list[IdentityMessage]
        if isinstance(message, DevicePosture):
            before = self.devices.get(message.device_id)
            after, signals = route_device(before, message)
            applied = after is not before
            if after is not None:
                self.devices[message.device_id] = after
            messages = list(signals)
        else:
            step = self._apply(message, now_us)
            applied = step.applied
            messages = step.messages
        if applied:
            self.counts.applied += 1
        else:
            self.counts.ignored += 1
        if messages:
            queue = deque(messages)
            while queue:
                queue.extend(self._apply(queue.popleft(), now_us).messages)
        return applied

    def advance(self, now_us: int) -> None:
        """Let time pass to `now_us`: fire every deadline passed by then, earliest first."""
        engine, identities = self.engine, self.identities
        for identity_id in self.deadlines.pop_due(now_us):
            self._record(engine.advance(identities[identity_id], now_us))

    def pending_obligations(self) -> int:
        """How many obligations wait for their deadline."""
        return sum(
            1
            for state in self.identities.values()
            for ob in state.obligations.values()
            if ob.state == PENDING
        )

    def _apply(self, message: IdentityMessage, now_us: int) -> Step:
        state = self.identities.get(message.identity_id)
        if state is None:
            state = self.identities[message.identity_id] = self.engine.new_state(
                message.identity_id
            )
        return self._record(self.engine.apply(state, message, now_us))

    def _record(self, step: Step) -> Step:
        self.deadlines.set(step.state.identity_id, step.wake_us)
        if step.records:
            for record in step.records:
                self._count(record)
                self.sink.emit(record)
        return step

    def _count(self, record: Record) -> None:
        if isinstance(record, FindingRecord):
            if record.status == "open":
                self.counts.opened += 1
            else:
                self.counts.resolved += 1
        else:
            self.counts.offboarding += 1
