"""Identities for the memory and recovery benchmarks, built by the engine itself: each becomes
active, has a compliant laptop bound, and is granted ten entitlements (two privileged), so its
state is what a real one holds (grants with versions, a joiner obligation met by the laptop, the
indexes) rather than a synthetic blob."""

from __future__ import annotations

from collections.abc import Iterator

from accessdrift.models.findings import FindingRecord
from accessdrift.models.messages import (
    DeviceSignal,
    EntitlementChange,
    IdentityMessage,
    StatusChange,
)
from accessdrift.models.policy import Policy
from accessdrift.models.state import IdentityState
from accessdrift.streams.engine import Engine
from accessdrift.streams.processor import Processor
from accessdrift.streams.store import MemoryDevices, TableStore

#: Identities between progress lines and producer flushes.
STATE_BATCH = 10_000
ENTITLEMENTS = (
    ("aws", "prod/AdministratorAccess", True),
    ("github", "org/admin", True),
    ("slack", "workspace", False),
    ("jira", "project:CORE", False),
    ("google", "drive", False),
    ("salesforce", "sales-user", False),
    ("zoom", "licensed", False),
    ("confluence", "space:ENG", False),
    ("okta", "apps", False),
    ("vpn", "corp-tunnel", False),
)
_S = 1_000_000


def messages_of(number: int, start_us: int) -> list[IdentityMessage]:
    """One identity's history: an hour before `start_us`, active, then its laptop, then its
    grants (so the joiner's deadline is a day ahead of `start_us`: pending, not judged)."""
    identity_id, at_us = f"user-{number}", start_us - 3600 * _S + number % 1000
    messages: list[IdentityMessage] = [
        StatusChange(identity_id, f"s{number}", at_us, "active", "human", "engineer", None),
        DeviceSignal(identity_id, f"d{number}", at_us + _S, f"laptop-{number}", "compliant", True),
    ]
    messages.extend(
        EntitlementChange(
            identity_id,
            f"g{number}-{index}",
            at_us + 2 * _S,
            system,
            entitlement,
            "granted",
            "role",
            privileged,
            None,
            False,
        )
        for index, (system, entitlement, privileged) in enumerate(ENTITLEMENTS)
    )
    return messages


def identity_states(
    count: int, start_us: int
) -> Iterator[tuple[IdentityState, bytes, bytes, list[FindingRecord]]]:
    """(state, table key, table value, open findings) of `count` identities, as the worker's
    identities table stores them."""
    engine = Engine(Policy())
    table: dict[bytes, bytes] = {}
    store = TableStore(table)
    processor = Processor(engine, store, MemoryDevices())
    for number in range(count):
        for message in messages_of(number, start_us):
            step = processor.apply(message, message.occurred_at_us)
        store.flush()
        ((key, value),) = table.items()
        table.clear()
        yield step.state, key, value, engine.open_findings(step.state)
