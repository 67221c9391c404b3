"""What a worker's own partitions hold now: open findings, live obligations, exceptions in force.

The gauges (`streams/metrics.py`) and the access-picture API (`GET /findings`) read it. It is kept
up to date from each step at the cost of what the step changed (never a scan of an identity's
state, so per-event cost stays flat), and rebuilt from the table when partitions are assigned.
"""

from __future__ import annotations

import heapq

from accessdrift.models.findings import FindingRecord
from accessdrift.models.messages import ExceptionGrant, IdentityMessage
from accessdrift.models.state import NEVER_US, IdentityState
from accessdrift.streams.engine import Step


class Census:
    """Counts and open findings across the partitions this worker owns."""

    def __init__(self) -> None:
        #: Live (pending or open) obligations per identity, and their sum.
        self._live: dict[str, int] = {}
        self.live_total = 0
        #: The open record of every finding open now, by finding id.
        self.open: dict[str, FindingRecord] = {}
        #: Exceptions not yet expired: (identity, exception id) → expiry, and a heap of expiries
        #: (stale entries are skipped: the dict says what is current).
        self._exceptions: dict[tuple[str, str], int] = {}
        self._expiries: list[tuple[int, str, str]] = []
        self.exceptions_expired = 0
        #: The latest clock any owned partition reached: what "now" is for ages.
        self.clock_us = NEVER_US

    @property
    def exceptions_active(self) -> int:
        return len(self._exceptions)

    def track(self, step: Step, message: IdentityMessage | None) -> None:
        """Take in one step of an identity (`message`: what it applied, if any)."""
        state = step.state
        identity_id = state.identity_id
        self._count_live(identity_id, len(state.obligations))
        for record in step.records:
            if isinstance(record, FindingRecord):
                if record.status == "open":
                    self.open[record.finding_id] = record
                else:
                    self.open.pop(record.finding_id, None)
        if isinstance(message, ExceptionGrant) and step.applied:
            self._exception(identity_id, message.exception_id, message.expires_at_us)

    def load(self, state: IdentityState, open_records: list[FindingRecord]) -> None:
        """Take in an identity's stored state (a partition was assigned to this worker)."""
        identity_id = state.identity_id
        self._count_live(identity_id, len(state.obligations))
        for record in open_records:
            self.open[record.finding_id] = record
        for waiver in state.waivers.values():
            if waiver.expires_at_us > self.clock_us:
                self._exception(identity_id, waiver.exception_id, waiver.expires_at_us)

    def forget(self) -> None:
        """Partitions were revoked: start over (the new assignment loads them again)."""
        self._live.clear()
        self.live_total = 0
        self.open.clear()
        self._exceptions.clear()
        self._expiries.clear()

    def advance(self, clock_us: int) -> None:
        """The clock reached `clock_us`: exceptions expiring by then are no longer in force."""
        self.clock_us = max(self.clock_us, clock_us)
        heap = self._expiries
        while heap and heap[0][0] <= self.clock_us:
            expires_us, identity_id, exception_id = heapq.heappop(heap)
            key = (identity_id, exception_id)
            if self._exceptions.get(key) == expires_us:
                del self._exceptions[key]
                self.exceptions_expired += 1

    def oldest_overdue_age_s(self) -> float:
        """How long past its deadline the oldest open finding is (0 with none open)."""
        if not self.open or self.clock_us == NEVER_US:
            return 0.0
        oldest_us = min(record.deadline_us for record in self.open.values())
        return max(0, self.clock_us - oldest_us) / 1e6

    def _count_live(self, identity_id: str, live: int) -> None:
        self.live_total += live - self._live.get(identity_id, 0)
        if live:
            self._live[identity_id] = live
        else:
            self._live.pop(identity_id, None)

    def _exception(self, identity_id: str, exception_id: str, expires_us: int) -> None:
        key = (identity_id, exception_id)
        if expires_us <= self.clock_us:
            self._exceptions.pop(key, None)
            return
        self._exceptions[key] = expires_us
        heapq.heappush(self._expiries, (expires_us, identity_id, exception_id))
