"""Paging sinks: PagerDuty Events API v2 and Prometheus Alertmanager. Each implements
`delivery.Sink` (they take records: each API has its own shape, so no formatter applies).

PagerDuty gets `trigger` when a finding at or above `min_severity` opens and `resolve` when it
resolves, with `dedup_key` derived from the finding id, so a repeated record is the same
incident. When more than `group_above` findings open in one batch (a mass-offboarding failure),
they become one grouped page with the count, resolved once every member has resolved; and every
request waits its turn under the per-key rate limit.

Alertmanager gets every open finding as an alert, re-sent every `resend_interval_s` while it is
open (Alertmanager forgets an alert not re-sent within its `resolve_timeout`), and once more
with `endsAt` when it resolves.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import msgspec
from pydantic import SecretStr

from accessdrift.alerts.delivery import DeliveryError
from accessdrift.alerts.transports import DEFAULT_TIMEOUT_S, HttpClient
from accessdrift.models.clock import format_us
from accessdrift.models.findings import FindingRecord, Record, stable_id
from accessdrift.models.vocabulary import Severity, Trigger

log = logging.getLogger(__name__)

_JSON: Final = msgspec.json.Encoder()
#: `payload.source` when a finding names no system.
PRODUCT_SOURCE: Final = "accessdrift"
SEVERITY_RANK: Final[dict[Severity, int]] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
PAGERDUTY_URL: Final = "https://events.pagerduty.com/v2/enqueue"
#: PagerDuty's severities: critical, error, warning, info.
PAGERDUTY_SEVERITY: Final[dict[Severity, str]] = {
    "critical": "critical",
    "high": "error",
    "medium": "warning",
    "low": "info",
}
#: PagerDuty limits: summary 1024 characters, dedup_key 255.
SUMMARY_LIMIT: Final = 1024
DEDUP_PREFIX: Final = "accessdrift-"
#: How many recently resolved single pages a sink remembers (see PagerDuty._resolved).
RESOLVED_REMEMBERED: Final = 10_000
#: How many members a grouped page lists in its details (the count is always exact).
GROUP_LISTED: Final = 50


def dedup_key(finding_id: str) -> str:
    """The PagerDuty dedup key of a finding: at most 255 characters, the same for its open and
    its resolved record (finding ids are 32 hex digits; a longer one is hashed down)."""
    key = DEDUP_PREFIX + finding_id
    return key if len(key) <= 255 else DEDUP_PREFIX + stable_id(finding_id)


class RateLimit:
    """At most `per_minute` requests in any 60 seconds (a sliding window: a token bucket would
    let a full burst and a minute's refill through in one minute)."""

    def __init__(
        self,
        per_minute: int,
        *,
        monotonic_s: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._per_minute = per_minute
        self._sent: deque[float] = deque()
        self._monotonic_s = monotonic_s
        self._sleep = sleep

    async def take(self) -> None:
        while True:
            now_s = self._monotonic_s()
            while self._sent and self._sent[0] <= now_s - 60:
                self._sent.popleft()
            if len(self._sent) < self._per_minute:
                self._sent.append(now_s)
                return
            await self._sleep(self._sent[0] + 60 - now_s)


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


def _details(r: FindingRecord) -> dict[str, Any]:
    return {
        "finding_id": r.finding_id,
        "kind": r.kind,
        "trigger": r.trigger,
        "identity_id": r.identity_id,
        "identity_kind": r.identity_kind,
        "system": r.system,
        "entitlement": r.entitlement,
        "entitlement_kind": r.entitlement_kind,
        "device_id": r.device_id,
        "triggered_at": format_us(r.triggered_at_us),
        "deadline": format_us(r.deadline_us),
        "detected_at": format_us(r.detected_at_us),
        "trigger_event_id": r.trigger_event_id,
        "exception_id": r.exception_id,
    }


class PagerDuty:
    """PagerDuty Events API v2 (see the module's docstring). The grouping of a batch is kept in
    memory: after a restart, a grouped page is resolved by hand or by PagerDuty's auto-resolve;
    single pages always resolve, their key being derived from the finding alone."""

    max_batch: Final = 500

    def __init__(
        self,
        name: str,
        routing_key: SecretStr,
        *,
        url: str = PAGERDUTY_URL,
        min_severity: Severity = "high",
        group_above: int = 5,
        rate_per_minute: int = 120,
        limit: RateLimit | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._routing_key = routing_key
        self._url = url
        self._min_rank = SEVERITY_RANK[min_severity]
        self._group_above = group_above
        self._limit = limit or RateLimit(rate_per_minute)
        self._http = HttpClient(None, timeout_s)
        #: finding id → the dedup key of the grouped page it belongs to; group key → members.
        self._group_of: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        #: Findings paged on their own and not resolved since: a repeated open record (the
        #: worker's outbox window after a crash) triggers nothing more. Bounded by open findings.
        self._paged: set[str] = set()
        #: Events PagerDuty refused for good (a 4xx), by action and dedup key, with the error:
        #: when the delivery loop sends a failed batch again record by record to find the bad
        #: one, the refused event is not sent a second time. Cleared by the finding's resolve.
        self._refused: dict[tuple[str, str], DeliveryError] = {}
        #: Dedup keys of single pages resolved lately, so that a batch sent again (record by
        #: record after a refusal, or whole after a failure part-way) resolves each once. The
        #: oldest are forgotten past RESOLVED_REMEMBERED: resolving again changes nothing.
        self._resolved: OrderedDict[str, None] = OrderedDict()

    def _pages(self, record: Record) -> bool:
        return (
            isinstance(record, FindingRecord) and SEVERITY_RANK[record.severity] >= self._min_rank
        )

    async def deliver(self, records: Sequence[Record]) -> None:
        findings = [r for r in records if isinstance(r, FindingRecord) and self._pages(r)]
        opening: dict[str, FindingRecord] = {}
        for r in findings:
            known = r.finding_id in self._paged or r.finding_id in self._group_of
            if r.status == "open" and not known:
                opening.setdefault(r.finding_id, r)
        if len(opening) > self._group_above:
            await self._trigger_group(list(opening.values()))
        else:
            for r in opening.values():
                await self._send("trigger", dedup_key(r.finding_id), self._payload(r))
                self._paged.add(r.finding_id)
        for r in findings:
            if r.status == "resolved":
                await self._resolve(r.finding_id)

    async def _trigger_group(self, opening: list[FindingRecord]) -> None:
        ids = sorted(r.finding_id for r in opening)
        key = DEDUP_PREFIX + "group-" + stable_id(*ids)
        worst = max(opening, key=lambda r: SEVERITY_RANK[r.severity])
        by_trigger: dict[Trigger, int] = {}
        for r in opening:
            by_trigger[r.trigger] = by_trigger.get(r.trigger, 0) + 1
        causes = ", ".join(
            f"{n} after {t.replace('_', ' ')}" for t, n in sorted(by_trigger.items())
        )
        identities = len({r.identity_id for r in opening})
        payload = {
            "summary": _summary(
                f"{len(opening)} access findings opened at once for {identities} identities "
                f"({causes}); the most severe: {worst.summary}"
            ),
            "source": PRODUCT_SOURCE,
            "severity": PAGERDUTY_SEVERITY[worst.severity],
            "timestamp": format_us(worst.detected_at_us),
            "component": "accessdrift",
            "group": "mass-failure",
            "class": "access-drift",
            "custom_details": {
                "count": len(opening),
                "identities": identities,
                "by_trigger": by_trigger,
                "findings": [_details(r) for r in opening[:GROUP_LISTED]],
                "listed": min(len(opening), GROUP_LISTED),
            },
        }
        await self._send("trigger", key, payload)
        self._members[key] = set(ids)
        for finding_id in ids:
            self._group_of[finding_id] = key

    async def _resolve(self, finding_id: str) -> None:
        group = self._group_of.get(finding_id)
        if group is None:
            # Sent even for a finding this process did not page: it may have been paged before
            # a restart, and resolving a resolved incident changes nothing in PagerDuty.
            key = dedup_key(finding_id)
            if key in self._resolved:
                return
            await self._send("resolve", key, None)
            self._paged.discard(finding_id)
            self._resolved[key] = None
            if len(self._resolved) > RESOLVED_REMEMBERED:
                self._resolved.popitem(last=False)
            return
        members = self._members[group]
        members.discard(finding_id)
        if not members:
            await self._send("resolve", group, None)
            del self._members[group]
        del self._group_of[finding_id]

    def _payload(self, r: FindingRecord) -> dict[str, Any]:
        return {
            "summary": _summary(r.summary),
            "source": r.system or PRODUCT_SOURCE,
            "severity": PAGERDUTY_SEVERITY[r.severity],
            "timestamp": format_us(r.detected_at_us),
            "component": r.entitlement or r.device_id or r.identity_id,
            "group": r.trigger,
            "class": r.kind,
            "custom_details": _details(r),
        }

    async def _send(self, action: str, key: str, payload: dict[str, Any] | None) -> None:
        event: dict[str, Any] = {
            "routing_key": self._routing_key.get_secret_value(),
            "event_action": action,
            "dedup_key": key,
        }
        if payload is not None:
            event["payload"] = payload
            event["client"] = "accessdrift"
        refused = self._refused.get((action, key))
        if refused is not None:
            raise refused
        await self._limit.take()
        try:
            await self._http.post(
                "PagerDuty", self._url, _JSON.encode(event), {"Content-Type": "application/json"}
            )
        except DeliveryError as error:
            if not error.retryable:
                self._refused[(action, key)] = error
            raise
        if action == "resolve":
            self._refused.pop(("trigger", key), None)

    async def close(self) -> None:
        await self._http.close()


class Alertmanager:
    """Prometheus Alertmanager, `POST /api/v2/alerts` (see the module's docstring). Call `run`
    in a task for the re-sending; `deliver` sends what changed at once."""

    max_batch: Final = 500

    def __init__(
        self,
        name: str,
        url: str,
        *,
        username: str | None = None,
        password: SecretStr | None = None,
        resend_interval_s: float = 60.0,
        labels: dict[str, str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wall_s: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._url = url.rstrip("/") + "/api/v2/alerts"
        self._headers = {"Content-Type": "application/json"}
        if username is not None and password is not None:
            token = f"{username}:{password.get_secret_value()}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        self.resend_interval_s = resend_interval_s
        self._labels = labels or {}
        self._wall_s = wall_s
        self._http = HttpClient(None, timeout_s)
        #: The alerts of findings open now, by finding id: what is re-sent.
        self.open: dict[str, dict[str, Any]] = {}

    def _alert(self, r: FindingRecord) -> dict[str, Any]:
        alert: dict[str, Any] = {
            "labels": {
                **self._labels,
                "alertname": "AccessDriftFinding",
                "finding_id": r.finding_id,
                "kind": r.kind,
                "trigger": r.trigger,
                "severity": r.severity,
                "identity_kind": r.identity_kind,
            },
            "annotations": {
                "summary": r.summary,
                "identity_id": r.identity_id,
                "triggered_at": format_us(r.triggered_at_us),
                "deadline": format_us(r.deadline_us),
                **({"system": r.system} if r.system is not None else {}),
                **({"entitlement": r.entitlement} if r.entitlement is not None else {}),
                **({"device_id": r.device_id} if r.device_id is not None else {}),
            },
            "startsAt": format_us(r.detected_at_us),
        }
        return alert

    def remember(self, record: Record) -> None:
        """Take in a record already delivered before a restart, without sending it: what is open
        is re-sent again."""
        if isinstance(record, FindingRecord):
            if record.status == "open":
                self.open[record.finding_id] = self._alert(record)
            else:
                self.open.pop(record.finding_id, None)

    async def deliver(self, records: Sequence[Record]) -> None:
        alerts = []
        closed: list[str] = []
        for r in records:
            if not isinstance(r, FindingRecord):
                continue
            alert = self._alert(r)
            if r.status == "open":
                self.open[r.finding_id] = alert
            else:
                ends_us = max(r.resolved_at_us or r.detected_at_us, r.detected_at_us)
                alert["endsAt"] = format_us(ends_us)
                closed.append(r.finding_id)
            alerts.append(alert)
        if alerts:
            await self._post(alerts)
        for finding_id in closed:
            self.open.pop(finding_id, None)

    async def resend(self) -> None:
        """Re-send every open alert once."""
        if self.open:
            await self._post(list(self.open.values()))

    async def _post(self, alerts: list[dict[str, Any]]) -> None:
        await self._http.post("Alertmanager", self._url, _JSON.encode(alerts), self._headers)

    async def close(self) -> None:
        await self._http.close()
