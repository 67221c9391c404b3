"""Records for the alerts tests."""

from __future__ import annotations

from typing import Any

import msgspec

from accessdrift.models.clock import parse_us
from accessdrift.models.findings import FindingRecord, OffboardingRecord, RevokedEntitlement

FINDING = FindingRecord(
    finding_id="0123456789abcdef0123456789abcdef",
    kind="access_not_revoked",
    trigger="leaver",
    status="open",
    identity_id="alice",
    identity_kind="human",
    system="github",
    entitlement="org-admin",
    entitlement_kind="role",
    device_id=None,
    severity="critical",
    triggered_at_us=parse_us("2026-01-05T09:00:00Z"),
    deadline_us=parse_us("2026-01-05T10:00:00Z"),
    detected_at_us=parse_us("2026-01-05T10:00:01Z"),
    resolved_at_us=None,
    trigger_event_id="s2",
    exception_id=None,
    summary="alice was terminated at 09:00 but still holds github org-admin.",
)
EVIDENCE = OffboardingRecord(
    offboarding_id="fedcba9876543210fedcba9876543210",
    identity_id="alice",
    identity_kind="human",
    terminated_at_us=parse_us("2026-01-05T09:00:00Z"),
    trigger_event_id="s2",
    completed_at_us=parse_us("2026-01-05T11:00:00Z"),
    all_within_window=False,
    entitlements=(
        RevokedEntitlement(
            system="github",
            entitlement="org-admin",
            entitlement_kind="role",
            privileged=True,
            deadline_us=parse_us("2026-01-05T10:00:00Z"),
            revoked_at_us=parse_us("2026-01-05T11:00:00Z"),
            within_window=False,
            finding_id=FINDING.finding_id,
        ),
    ),
)


def finding(**changes: Any) -> FindingRecord:
    """FINDING with some fields changed."""
    return msgspec.structs.replace(FINDING, **changes)


def resolved(record: FindingRecord, at: str = "2026-01-05T11:00:00Z") -> FindingRecord:
    return msgspec.structs.replace(record, status="resolved", resolved_at_us=parse_us(at))


def many(count: int, **changes: Any) -> list[FindingRecord]:
    """`count` distinct open findings (ids f0000…), e.g. a mass-offboarding failure."""
    return [
        finding(finding_id=f"f{i:031x}", identity_id=f"user{i}", **changes) for i in range(count)
    ]
