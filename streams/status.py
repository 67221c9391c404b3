"""The worker's status page at `/`, and the time-to-revoke summary it charts.

The page is three static files (`streams/web/`: HTML, a little JavaScript, CSS; no build step)
that hold no data: its script reads the API behind the same bearer token as every other caller
(`/findings`, `/identities/{id}`, `/time-to-revoke`). The token comes from the address's
fragment (`/#token=...`, which browsers never send to a server, so it reaches no log) or a
form, and is kept in the tab's session storage. Everything the API returns is put on the page
as text, never as markup, so an entitlement named like a script stays a name.

The summary is read from the worker's time-to-revoke histogram and ended-obligations counter
alone (not a whole scrape, whose census gauges walk every open finding), so it covers the
partitions this worker owns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from importlib import resources
from typing import Final

import msgspec
from prometheus_client.core import Metric

#: Path → (file in streams/web, content type). Served as they are: nothing in them depends on
#: the request or holds data.
STATIC_FILES: Final = {
    "/": ("status.html", "text/html"),
    "/status.js": ("status.js", "text/javascript"),
    "/status.css": ("status.css", "text/css"),
}
#: Only the worker's own origin: no inline script, no third-party anything, no framing.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_HISTOGRAM: Final = "accessdrift_time_to_revoke_seconds"
_ENDED: Final = "accessdrift_obligations_ended"


def static_file(name: str) -> bytes:
    return resources.files("accessdrift.streams").joinpath("web", name).read_bytes()


class TriggerSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Time to revoke for one trigger, for privileged access or the rest, on this worker."""

    trigger: str
    privileged: bool
    #: Obligations met within their window, and after it (a finding opened, then resolved).
    on_time: int
    late: int
    #: The share of met obligations that were met within the window; null when none was met.
    within_window: float | None
    #: Cumulative histogram of the time to revoke: (upper bound in seconds, count at or below
    #: it); the last bound is +Inf, written as null.
    buckets: list[tuple[float | None, int]]
    sum_s: float
    #: Estimates from the buckets, as PromQL's histogram_quantile makes them; null when empty.
    p50_s: float | None
    p90_s: float | None
    p99_s: float | None


def bucket_quantile(q: float, buckets: list[tuple[float, int]]) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated linearly within the bucket it falls
    in (PromQL's `histogram_quantile`); the highest finite bound when it falls in +Inf."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def time_to_revoke(families: Iterable[Metric]) -> list[TriggerSummary]:
    """Per (trigger, privileged) with at least one obligation met: the histogram summed over
    identity kinds, and the on-time and late counts, from the two metrics' families."""
    buckets: dict[tuple[str, bool], dict[float, float]] = {}
    sums: dict[tuple[str, bool], float] = {}
    outcomes: dict[tuple[str, bool, str], float] = {}
    for family in families:
        for sample in family.samples:
            key = (sample.labels["trigger"], sample.labels["privileged"] == "true")
            if sample.name == f"{_ENDED}_total":
                outcome = (*key, sample.labels["outcome"])
                outcomes[outcome] = outcomes.get(outcome, 0.0) + sample.value
            elif sample.name == f"{_HISTOGRAM}_bucket":
                row = buckets.setdefault(key, {})
                bound = float(sample.labels["le"])
                row[bound] = row.get(bound, 0.0) + sample.value
            elif sample.name == f"{_HISTOGRAM}_sum":
                sums[key] = sums.get(key, 0.0) + sample.value
    summaries = []
    for (trigger, privileged), row in sorted(buckets.items()):
        cumulative = [(bound, int(count)) for bound, count in sorted(row.items())]
        if not cumulative[-1][1]:
            continue
        on_time = int(outcomes.get((trigger, privileged, "on_time"), 0))
        late = int(outcomes.get((trigger, privileged, "late"), 0))
        summaries.append(
            TriggerSummary(
                trigger=trigger,
                privileged=privileged,
                on_time=on_time,
                late=late,
                within_window=on_time / (on_time + late) if on_time + late else None,
                buckets=[(None if math.isinf(b) else b, c) for b, c in cumulative],
                sum_s=sums.get((trigger, privileged), 0.0),
                p50_s=bucket_quantile(0.5, cumulative),
                p90_s=bucket_quantile(0.9, cumulative),
                p99_s=bucket_quantile(0.99, cumulative),
            )
        )
    return summaries
