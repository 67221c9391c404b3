"""Delivery to receivers with no local build, through stand-in servers on loopback: Splunk HEC,
PagerDuty and a signed webhook; retries, backoff, outages, grouping, rate limits and secrets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from accessdrift.alerts.delivery import Backoff, Deliverer, DeliveryMetrics, FormattedSink, Sink
from accessdrift.alerts.formats import FORMATTERS
from accessdrift.alerts.paging import PagerDuty, RateLimit, dedup_key
from accessdrift.alerts.transports import SplunkHec, Syslog, Webhook
from accessdrift.models.findings import Record
from tests.alerts.records import EVIDENCE, FINDING, finding, many, resolved
from tests.alerts.standins import Answer, Seen, StandIn

TOKEN = "hec-token-7f3a9c1e"
ROUTING_KEY = "R0UTINGKEY0123456789abcdef012345"
HEC_PATH = "/services/collector/event"


class VirtualTime:
    """A clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now_s = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_s += seconds
        await asyncio.sleep(0)

    def monotonic(self) -> float:
        return self.now_s


BACKOFF = Backoff(1, 60)


def _deliverer(sink: Sink, clock: VirtualTime, backoff: Backoff = BACKOFF) -> Deliverer:
    metrics = DeliveryMetrics(CollectorRegistry())
    return Deliverer(sink, metrics, backoff, sleep=clock.sleep, draw=lambda: 1.0)


def _count(deliverer: Deliverer, what: str) -> float:
    counter = getattr(deliverer.metrics, what)
    value: float = counter.labels(sink=deliverer.sink.name)._value.get()
    return value


def _hec(server: StandIn, fmt: str = "ocsf", **options: Any) -> FormattedSink:
    transport = SplunkHec(server.url, SecretStr(TOKEN), **options)
    return FormattedSink("splunk", FORMATTERS[fmt], transport)  # type: ignore[index]


def _run(deliverer: Deliverer, *batches: Sequence[Record]) -> None:
    async def go() -> None:
        try:
            for batch in batches:
                await deliverer.deliver(batch)
        finally:
            await deliverer.sink.close()

    asyncio.run(go())


def test_hec_gets_one_batched_request_with_the_token_and_each_record_as_an_event() -> None:
    with StandIn() as hec:
        deliverer = _deliverer(_hec(hec, sourcetype="accessdrift:ocsf"), VirtualTime())
        _run(deliverer, [FINDING, resolved(FINDING), EVIDENCE])

    (request,) = hec.at(HEC_PATH)
    assert request.headers["Authorization"] == f"Splunk {TOKEN}"
    events = request.json_lines()
    assert [e["event"]["finding_info"]["uid"] for e in events] == [
        FINDING.finding_id,
        FINDING.finding_id,
        EVIDENCE.offboarding_id,
    ]
    assert [e["event"]["activity_id"] for e in events] == [1, 3, 3]
    assert events[0]["time"] == FINDING.detected_at_us / 1e6
    assert events[0]["sourcetype"] == "accessdrift:ocsf"
    assert _count(deliverer, "delivered") == 3


def test_hec_carries_a_text_format_as_a_string_event() -> None:
    with StandIn() as hec:
        _run(_deliverer(_hec(hec, "cef"), VirtualTime()), [FINDING])

    (event,) = hec.at(HEC_PATH)[0].json_lines()
    assert event["event"].startswith("CEF:0|accessdrift|")


def test_hec_with_indexer_acknowledgement_waits_for_the_ack_in_its_channel() -> None:
    def respond(seen: Seen, index: int) -> Answer:
        if seen.path == HEC_PATH:
            return Answer(body={"text": "Success", "code": 0, "ackId": 7})
        return Answer(body={"acks": {"7": index >= 2}})

    with StandIn(respond) as hec:
        _run(_deliverer(_hec(hec, ack=True, ack_poll_s=0.01), VirtualTime()), [FINDING])

    acks = hec.at("/services/collector/ack")
    assert len(acks) == 3, "polled until acknowledged"
    assert acks[0].json() == {"acks": [7]}
    channel = hec.at(HEC_PATH)[0].headers["X-Splunk-Request-Channel"]
    assert all(a.headers["X-Splunk-Request-Channel"] == channel for a in acks)


def test_429_is_retried_no_sooner_than_retry_after() -> None:
    def respond(seen: Seen, index: int) -> Answer:
        return Answer(429, {"text": "busy"}, {"Retry-After": "7"}) if index == 0 else Answer()

    clock = VirtualTime()
    with StandIn(respond) as hec:
        deliverer = _deliverer(_hec(hec), clock, Backoff(0.5, 60))
        _run(deliverer, [FINDING])

    assert len(hec.at(HEC_PATH)) == 2
    assert clock.sleeps == [7.0]
    assert _count(deliverer, "retries") == 1
    assert _count(deliverer, "delivered") == 1


def test_5xx_backs_off_exponentially_up_to_the_cap() -> None:
    def respond(seen: Seen, index: int) -> Answer:
        return Answer(503, {"text": "down"}) if index < 6 else Answer()

    clock = VirtualTime()
    with StandIn(respond) as hec:
        deliverer = _deliverer(_hec(hec), clock, Backoff(1, 10))
        _run(deliverer, [FINDING])

    assert clock.sleeps == [1, 2, 4, 8, 10, 10], "doubling, capped (jitter drawn at its top)"
    assert _count(deliverer, "delivered") == 1


def test_jitter_spreads_the_wait_below_the_ceiling() -> None:
    backoff = Backoff(1, 60)

    assert backoff.delay_s(3, None, lambda: 0.25) == 2.0
    assert backoff.delay_s(40, None, lambda: 0.5) == 30.0, "capped, huge attempts included"
    assert backoff.delay_s(0, 9.0, lambda: 0.1) == 9.0, "never less than Retry-After"


def test_400_is_not_retried_and_only_the_refused_record_is_lost() -> None:
    def respond(seen: Seen, index: int) -> Answer:
        if b"bad-record" in seen.body:
            return Answer(400, {"text": "Invalid data format", "code": 6})
        return Answer()

    bad = finding(finding_id="bad-record")
    clock = VirtualTime()
    with StandIn(respond) as hec:
        deliverer = _deliverer(_hec(hec), clock)
        _run(deliverer, [FINDING, bad, resolved(FINDING)])

    bodies = [r.json_lines() for r in hec.at(HEC_PATH)]
    assert [len(b) for b in bodies] == [3, 1, 1, 1], "the batch, then each record once"
    assert clock.sleeps == [], "nothing waited on: a 4xx is not retried"
    assert _count(deliverer, "failed") == 1
    assert _count(deliverer, "delivered") == 2
    assert _count(deliverer, "retries") == 0


def test_a_hung_receiver_times_out_and_is_retried() -> None:
    def respond(seen: Seen, index: int) -> Answer:
        return Answer(hang=True) if index == 0 else Answer()

    with StandIn(respond) as hec:
        deliverer = _deliverer(_hec(hec, timeout_s=0.3), VirtualTime())
        _run(deliverer, [FINDING])

    assert len(hec.at(HEC_PATH)) == 2
    assert _count(deliverer, "retries") == 1
    assert _count(deliverer, "delivered") == 1


def test_a_one_minute_outage_delays_delivery_and_loses_nothing() -> None:
    clock = VirtualTime()

    def respond(seen: Seen, index: int) -> Answer:
        return Answer(503, {"text": "outage"}) if clock.now_s < 60 else Answer()

    records = many(30)
    with StandIn(respond) as hec:
        deliverer = _deliverer(_hec(hec, batch=10), clock, Backoff(1, 8))
        _run(deliverer, records[:10], records[10:20], records[20:])

    accepted = [e for r in hec.at(HEC_PATH)[-3:] for e in r.json_lines()]
    assert [e["event"]["finding_info"]["uid"] for e in accepted] == [r.finding_id for r in records]
    assert clock.now_s >= 60
    assert _count(deliverer, "delivered") == 30
    assert _count(deliverer, "failed") == 0


def test_secrets_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    def respond(seen: Seen, index: int) -> Answer:
        # A receiver that echoes the request's credentials back in its error.
        echoed = {"text": f"bad token {seen.headers.get('Authorization')}", "code": 4}
        if index == 0:
            return Answer(503, echoed)
        return Answer(403, echoed)

    caplog.set_level(logging.DEBUG)
    with StandIn(respond) as hec:
        deliverer = _deliverer(_hec(hec), VirtualTime())
        _run(deliverer, [FINDING])
        pager = _deliverer(PagerDuty("pd", SecretStr(ROUTING_KEY), url=hec.url), VirtualTime())
        _run(pager, [FINDING])

    assert _count(deliverer, "failed") == 1
    assert "403" in caplog.text
    assert TOKEN not in caplog.text
    assert ROUTING_KEY not in caplog.text
    assert TOKEN not in repr(deliverer.sink.transport.__dict__)  # type: ignore[attr-defined]


# -- PagerDuty -----------------------------------------------------------------------------------


def _pager(server: StandIn, clock: VirtualTime, **options: Any) -> Deliverer:
    limit = RateLimit(
        options.pop("rate_per_minute", 120), monotonic_s=clock.monotonic, sleep=clock.sleep
    )
    sink = PagerDuty("pagerduty", SecretStr(ROUTING_KEY), url=server.url, limit=limit, **options)
    return _deliverer(sink, clock)


def test_pagerduty_triggers_then_resolves_with_the_same_dedup_key() -> None:
    low = finding(finding_id="low0", severity="low")
    with StandIn(lambda s, i: Answer(202, {"status": "success"})) as pd:
        _run(_pager(pd, VirtualTime()), [FINDING, low], [resolved(FINDING), resolved(low)])

    events = [r.json() for r in pd.seen]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"], "low is below high"
    assert events[0]["dedup_key"] == events[1]["dedup_key"] == dedup_key(FINDING.finding_id)
    assert len(events[0]["dedup_key"]) <= 255
    assert events[0]["routing_key"] == ROUTING_KEY
    payload = events[0]["payload"]
    assert payload["summary"] == FINDING.summary
    assert payload["severity"] == "critical"
    assert payload["source"] == "github"
    assert payload["custom_details"]["identity_id"] == "alice"
    assert payload["custom_details"]["deadline"] == "2026-01-05T10:00:00Z"


def test_a_repeated_open_record_pages_once() -> None:
    """The worker's outbox window can publish a record twice after a crash: one trigger."""
    with StandIn(lambda s, i: Answer(202, {"status": "success"})) as pd:
        _run(_pager(pd, VirtualTime()), [FINDING], [FINDING, FINDING], [resolved(FINDING)])

    assert [r.json()["event_action"] for r in pd.seen] == ["trigger", "resolve"]


def test_an_event_pagerduty_refuses_is_sent_once_and_the_rest_of_the_batch_still_pages() -> None:
    """The delivery loop sends a refused batch again record by record to find the bad one; the
    pager sends neither the refused event nor the accepted triggers a second time."""
    bad = finding(finding_id="bad0")
    other = finding(finding_id="other0")

    def respond(seen: Seen, index: int) -> Answer:
        if seen.json()["dedup_key"] == dedup_key("bad0"):
            return Answer(400, {"status": "invalid event", "message": "Event object is invalid"})
        return Answer(202, {"status": "success"})

    clock = VirtualTime()
    with StandIn(respond) as pd:
        deliverer = _pager(pd, clock)
        _run(deliverer, [FINDING, bad, other], [resolved(FINDING), resolved(bad)])

    sent = [(r.json()["event_action"], r.json()["dedup_key"]) for r in pd.seen]
    assert sent == [
        ("trigger", dedup_key(FINDING.finding_id)),
        ("trigger", dedup_key("bad0")),
        ("trigger", dedup_key("other0")),
        ("resolve", dedup_key(FINDING.finding_id)),
        ("resolve", dedup_key("bad0")),
    ]
    assert clock.sleeps == [], "a 4xx is not retried"
    assert _count(deliverer, "failed") == 2, "bad0's trigger and its resolve"
    assert _count(deliverer, "delivered") == 3


def test_pagerduty_dedup_keys_stay_within_255_characters() -> None:
    assert len(dedup_key("x" * 1000)) <= 255
    assert dedup_key("x" * 1000) != dedup_key("x" * 999)


def test_a_mass_failure_becomes_one_grouped_page_resolved_when_all_are() -> None:
    burst = many(40, trigger="leaver", severity="high")
    with StandIn(lambda s, i: Answer(202, {"status": "success"})) as pd:
        _run(
            _pager(pd, VirtualTime(), group_above=5),
            burst,
            [resolved(r) for r in burst[:39]],
            [resolved(burst[39])],
        )

    events = [r.json() for r in pd.seen]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]
    details = events[0]["payload"]["custom_details"]
    assert details["count"] == 40
    assert details["identities"] == 40
    assert details["by_trigger"] == {"leaver": 40}
    assert events[0]["payload"]["summary"].startswith("40 access findings opened at once")


def test_pagerduty_requests_stay_under_the_per_key_rate_limit() -> None:
    clock = VirtualTime()
    sent_at: list[float] = []

    def respond(seen: Seen, index: int) -> Answer:
        sent_at.append(clock.now_s)
        return Answer(202, {"status": "success"})

    records = many(300)
    with StandIn(respond) as pd:
        pager = _pager(pd, clock, group_above=1000, rate_per_minute=120)
        _run(pager, *[records[i : i + 5] for i in range(0, 300, 5)])

    assert len(sent_at) == 300
    for start in sent_at:
        in_a_minute = [t for t in sent_at if start <= t < start + 60]
        assert len(in_a_minute) <= 120, "in any minute"
    assert clock.now_s >= 120, "300 requests need three minutes' allowance"


# -- webhook -------------------------------------------------------------------------------------


def test_webhooks_are_signed_the_standard_webhooks_way() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    with StandIn() as hook:
        transport = Webhook(f"{hook.url}/hooks/soc", SecretStr(secret), wall_s=lambda: 1767607201.5)
        sink = FormattedSink("soc", FORMATTERS["ecs"], transport)
        _run(_deliverer(sink, VirtualTime()), [FINDING, resolved(FINDING)])

    first, second = hook.at("/hooks/soc")
    assert first.headers["webhook-id"] == f"{FINDING.finding_id}.open"
    assert second.headers["webhook-id"] == f"{FINDING.finding_id}.resolved"
    for request in (first, second):
        assert request.headers["webhook-timestamp"] == "1767607201"
        signed = f"{request.headers['webhook-id']}.1767607201.".encode() + request.body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert request.headers["webhook-signature"] == f"v1,{expected}"
    assert json.loads(first.body)["event"]["kind"] == "alert"


def test_a_syslog_message_too_large_for_udp_is_refused_not_retried_forever() -> None:
    transport = Syslog("127.0.0.1", 9, "udp")
    deliverer = _deliverer(FormattedSink("udp", FORMATTERS["cef"], transport), VirtualTime())

    _run(deliverer, [finding(summary="x" * 70_000), FINDING])

    assert _count(deliverer, "failed") == 1
    assert _count(deliverer, "retries") == 0
    assert _count(deliverer, "delivered") == 1
