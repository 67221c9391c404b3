"""The engine run in one process over in-memory state: the shell behind replay and benchmarks.

It runs the shared processing loop (`streams/processor.py`) over a memory store, delivers the
messages the engine sends between identities (first in, first out, before the next input), and
writes every record to a sink as it happens.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from accessdrift.alerts.sinks import RecordSink
from accessdrift.models.findings import FindingRecord, ObligationEnded
from accessdrift.models.messages import DevicePosture, IdentityMessage, InputMessage
from accessdrift.models.vocabulary import Outcome
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.processor import Processor
from accessdrift.streams.store import MemoryDevices, MemoryStore


@dataclass
class Counts:
    """What a run has done so far."""

    applied: int = 0
    ignored: int = 0
    opened: int = 0
    resolved: int = 0
    offboarding: int = 0
    #: Obligations that ended, by how.
    ended: Counter[Outcome] = field(default_factory=Counter)


class LocalRuntime:
    """Runs the engine over in-memory state, sending every record to `sink` as it happens."""

    def __init__(
        self,
        engine: Engine,
        sink: RecordSink,
        on_ended: Callable[[ObligationEnded], None] | None = None,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.on_ended = on_ended
        self.store = MemoryStore()
        self.processor = Processor(engine, self.store, MemoryDevices())
        self.counts = Counts()

    def submit(self, message: InputMessage, now_us: int) -> bool:
        """Apply one input message at `now_us`, with everything it sets off; False if ignored."""
        messages: list[IdentityMessage]
        if isinstance(message, DevicePosture):
            routed = self.processor.route(message)
            applied = not isinstance(routed, str)
            messages = []
            if not isinstance(routed, str):
                self.processor.keep_device(routed[0])
                messages = list(routed[1])
        else:
            step = self._emit(self.processor.apply(message, now_us))
            applied = step.applied
            messages = step.messages
        if applied:
            self.counts.applied += 1
        else:
            self.counts.ignored += 1
        if messages:
            queue = deque(messages)
            while queue:
                queue.extend(self._emit(self.processor.apply(queue.popleft(), now_us)).messages)
        return applied

    def advance(self, now_us: int) -> None:
        """Let time pass to `now_us`: fire every deadline passed by then, earliest first."""
        for step in self.processor.advance(now_us):
            self._emit(step)

    def pending_obligations(self) -> int:
        """How many obligations wait for their deadline."""
        return sum(
            1
            for state in self.store.states()
            for ob in state.obligations.values()
            if ob.state == "pending"
        )

    def open_privileged(self) -> frozenset[str]:
        """The finding ids of open obligations about privileged access."""
        return frozenset(
            ob.finding_id
            for state in self.store.states()
            for ob in state.obligations.values()
            if ob.state == "open" and ob.privileged
        )

    def _emit(self, step: Step) -> Step:
        counts = self.counts
        for record in step.records:
            if isinstance(record, FindingRecord):
                if record.status == "open":
                    counts.opened += 1
                else:
                    counts.resolved += 1
            else:
                counts.offboarding += 1
            self.sink.emit(record)
        for ended in step.ended:
            counts.ended[ended.outcome] += 1
            if self.on_ended is not None:
                self.on_ended(ended)
        return step
