"""The one processing loop: load state, run the engine, store what it decided, index its wake time.

Replay, the benchmarks and the faust worker all run the engine through this loop, over a store of
their kind (`streams/store.py`), so the in-process and the live runtime cannot drift apart. What
is done with a step's output (write it to a sink, deliver messages in process, or publish to
Kafka from the stored outbox) is the shell's business.
"""

from __future__ import annotations

from collections.abc import Iterator

from accessdrift.models.messages import DevicePosture, DeviceSignal, IdentityMessage
from accessdrift.models.state import DeviceState, Ignored
from accessdrift.streams.deadlines import DeadlineIndex
from accessdrift.streams.devices import route_device
from accessdrift.streams.engine import Engine, Step
from accessdrift.streams.store import DeviceStore, IdentityStore


class Processor:
    """Runs the engine over `identities`, with `deadlines` saying which identities need the clock
    (one processor per partition in the worker, sharing the store)."""

    def __init__(
        self,
        engine: Engine,
        identities: IdentityStore,
        devices: DeviceStore,
        deadlines: DeadlineIndex | None = None,
    ) -> None:
        self.engine = engine
        self.identities = identities
        self.devices = devices
        self.deadlines = DeadlineIndex() if deadlines is None else deadlines

    def apply(self, message: IdentityMessage, now_us: int) -> Step:
        """One message for one identity, at `now_us`."""
        state = self.identities.get(message.identity_id)
        if state is None:
            state = self.engine.new_state(message.identity_id)
        return self._keep(self.engine.apply(state, message, now_us))

    def route(
        self, message: DevicePosture, routed: dict[str, DeviceState] | None = None
    ) -> tuple[DeviceState, list[DeviceSignal]] | Ignored:
        """One posture event for one device: its new state and the signals for identities (or
        why it was ignored: a repeat or stale). The shell stores the state with `keep_device`
        once the signals are safely on their way: stored first, a crash in between would make
        the event a repeat and lose them. `routed` collects the states routed but not yet kept
        (a batch), which the device's next event must see."""
        known = None if routed is None else routed.get(message.device_id)
        result = route_device(
            self.devices.get(message.device_id) if known is None else known, message
        )
        if routed is not None and not isinstance(result, str):
            routed[message.device_id] = result[0]
        return result

    def keep_device(self, state: DeviceState) -> None:
        self.devices.put(state)

    def advance(self, now_us: int) -> Iterator[Step]:
        """Let time pass to `now_us`: a step for every identity with something due, earliest
        first."""
        engine, identities = self.engine, self.identities
        for identity_id in self.deadlines.pop_due(now_us):
            state = identities.get(identity_id)
            if state is not None:
                yield self._keep(engine.advance(state, now_us))

    def _keep(self, step: Step) -> Step:
        self.identities.put(step)
        self.deadlines.set(step.state.identity_id, step.wake_us)
        return step
