"""The device side of the engine: pure, keyed by device.

A device event changes only that device's state; what it means for identities travels as explicit
DeviceSignal messages keyed by identity, so the identity engine can run partitioned by identity.
"""

from __future__ import annotations

from msgspec import UNSET

from accessdrift.models.messages import DevicePosture, DeviceSignal
from accessdrift.models.state import DeviceState, Ignored, Version


def route_device(
    state: DeviceState | None, message: DevicePosture
) -> tuple[DeviceState, list[DeviceSignal]] | Ignored:
    """Apply a posture event to a device (in place); return its state and the signals for
    identities; for a repeated or stale event, which changes nothing, which of the two it was.

    Every identity bound after the event hears the device's posture; every identity that lost the
    binding hears that it is no longer bound. The work is linear in the identities the event and
    the device name (a set, not a scan per identity), however many there are.
    """
    if state is None:
        state = DeviceState(message.device_id, message.posture, [], Version())
    admission = state.version.admit(message.occurred_at_us, message.event_id)
    if admission != "applied":
        return admission
    previous = state.identity_ids
    now_bound = previous if message.identity_ids is UNSET else list(message.identity_ids)
    bound = set(now_bound)
    signals = [
        DeviceSignal(
            identity_id=identity_id,
            event_id=message.event_id,
            occurred_at_us=message.occurred_at_us,
            device_id=message.device_id,
            posture=message.posture,
            bound=True,
        )
        for identity_id in now_bound
    ]
    signals.extend(
        DeviceSignal(
            identity_id=identity_id,
            event_id=message.event_id,
            occurred_at_us=message.occurred_at_us,
            device_id=message.device_id,
            posture=message.posture,
            bound=False,
        )
        for identity_id in previous
        if identity_id not in bound
    )
    state.posture = message.posture
    state.identity_ids = now_bound
    return state, signals
