"""An index of when each identity next needs the clock: which identities to `advance`, in order."""

from __future__ import annotations

import heapq


class DeadlineIndex:
    """Wake times per identity, popped in (time, identity) order.

    Setting a new wake time for an identity replaces the old one; stale heap entries are skipped
    when popped, so each update costs O(log n) and nothing is searched.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._wake: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._wake)

    def set(self, identity_id: str, wake_us: int | None) -> None:
        """Record that `identity_id` needs the clock after `wake_us` (None: never)."""
        current = self._wake.get(identity_id)
        if wake_us == current:
            return
        if wake_us is None:
            del self._wake[identity_id]
            return
        self._wake[identity_id] = wake_us
        heapq.heappush(self._heap, (wake_us, identity_id))

    def pop_due(self, now_us: int) -> list[str]:
        """Remove and return every identity whose wake time is before `now_us`, earliest first."""
        due: list[str] = []
        heap, wake = self._heap, self._wake
        while heap and heap[0][0] < now_us:
            wake_us, identity_id = heapq.heappop(heap)
            if wake.get(identity_id) == wake_us:
                del wake[identity_id]
                due.append(identity_id)
        return due

    def next_us(self) -> int | None:
        """The earliest wake time, or None when nothing waits."""
        heap, wake = self._heap, self._wake
        while heap and wake.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
