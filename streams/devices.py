"""The device side of the engine: pure, keyed by device.

A device event changes only that device's state; what it means for identities travels as explicit
DeviceSignal messages keyed by identity, so the identity engine can run partitioned by identity.
"""

from __future__ import annotations

from accessdrift.models.messages import DevicePosture, DeviceSignal
from accessdrift.models.state import DeviceState


def route_device(
    state: DeviceState | None, message: DevicePosture
) -> tuple[DeviceState | None, list[DeviceSignal]]:
    """Apply a posture event to a device; return its new state and the signals for identities.

    Every identity bound after the event hears the device's posture; every identity that lost the
    binding hears that it is no longer bound. A repeated or stale event (version not newer than
    the device's) changes nothing and returns the state unchanged with no signals.
    """
    if state is not None and (message.occurred_at_us, message.event_id) <= (
        state.changed_at_us,
        state.event_id,
    ):
        return state, []
    previous = state.identity_ids if state is not None else ()
    signals = [
        DeviceSignal(
            identity_id=identity_id,
            event_id=message.event_id,
            occurred_at_us=message.occurred_at_us,
            device_id=message.device_id,
            posture=message.posture,
            bound=True,
        )
        for identity_id in message.identity_ids
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
        if identity_id not in message.identity_ids
    )
    new_state = DeviceState(
        device_id=message.device_id,
        posture=message.posture,
        identity_ids=message.identity_ids,
        changed_at_us=message.occurred_at_us,
        event_id=message.event_id,
    )
    return new_state, signals
