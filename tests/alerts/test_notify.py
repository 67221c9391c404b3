"""`accessdrift notify` end to end: a real process reading a findings topic on the embedded
broker, delivering to stand-in Splunk HEC and PagerDuty receivers. A receiver that is down loses
nothing; a killed service, restarted, resends only what was not acknowledged; a mass failure is
one page; no secret reaches the log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from accessdrift.alerts.delivery import FormattedSink
from accessdrift.alerts.formats import FORMATTERS
from accessdrift.alerts.paging import dedup_key
from accessdrift.alerts.transports import KafkaTopic
from accessdrift.models.findings import FindingRecord, encode_record
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.alerts.records import finding, many, resolved
from tests.alerts.standins import Answer, Seen, StandIn
from tests.faults import soak
from tests.kafka import create_topics, read_topic, wait_consumed
from tests.workers import ACCESSDRIFT

HEC_TOKEN = "hec-0b1c2d3e4f"
PD_KEY = "pdkey-9a8b7c6d5e"


def _publish(bootstrap: str, topic: str, records: list[FindingRecord]) -> None:
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for record in records:
                await producer.send(topic, encode_record(record), key=record.identity_id.encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


class Outage:
    """Whether the HEC stand-in is down, and what it accepted."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.accepted: list[str] = []

    def respond(self, seen: Seen, index: int) -> Answer:
        if self.down.is_set():
            return Answer(503, {"text": "Server is busy", "code": 9})
        self.accepted.extend(e["fields"]["record_id"] for e in seen.json_lines())
        return Answer()


class Notify:
    """An `accessdrift notify` process."""

    def __init__(self, config: Path, bootstrap: str, topic: str, log: Path) -> None:
        self.log = log
        self.port = free_port()
        env = {
            **os.environ,
            "HEC_TOKEN": HEC_TOKEN,
            "PD_KEY": PD_KEY,
            "ACCESSDRIFT_TOPIC_FINDINGS": topic,
        }
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [ACCESSDRIFT, "notify", "--config", str(config), "--broker", bootstrap,
                 "--web-port", str(self.port)],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def setup(broker: EmbeddedBroker, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    run = f"notify-{request.node.name[-20:]}-{time.monotonic_ns() % 10**6}"
    topic = f"{run}.findings"
    create_topics(broker.bootstrap, [topic])
    return {"run": run, "topic": topic, "home": tmp_path}


def _config(home: Path, hec: str, pd: str, run: str) -> Path:
    path = home / "notify.toml"
    path.write_text(
        f'group_prefix = "{run}"\nlinger = "2s"\n'
        '[retry]\ninitial_backoff = "0s"\nmax_backoff = "1s"\n'
        f'[[sink]]\nname = "splunk"\ntype = "splunk_hec"\nurl = "{hec}"\n'
        'token = { env = "HEC_TOKEN" }\nformat = "ocsf"\nbatch = 7\n'
        f'[[sink]]\nname = "oncall"\ntype = "pagerduty"\nurl = "{pd}/v2/enqueue"\n'
        'routing_key = { env = "PD_KEY" }\nmin_severity = "high"\ngroup_above = 5\n'
    )
    return path


def test_an_outage_and_a_killed_service_lose_nothing_and_resend_only_the_unacknowledged(
    broker: EmbeddedBroker, setup: dict[str, Any]
) -> None:
    home, topic, run = setup["home"], setup["topic"], setup["run"]
    records = many(30, severity="low")  # below the pager's threshold: this test is about HEC
    outage = Outage()
    log = home / "notify.log"
    with StandIn(outage.respond) as hec, StandIn() as pd:
        config = _config(home, hec.url, pd.url, run)
        _publish(broker.bootstrap, topic, records[:20])
        notify = Notify(config, broker.bootstrap, topic, log)
        try:
            _wait(lambda: len(set(outage.accepted)) == 20, 60, "the first 20 records")
            wait_consumed(broker.bootstrap, f"{run}.splunk", [topic])

            outage.down.set()
            _publish(broker.bootstrap, topic, records[20:])
            _wait(lambda: len(hec.seen) > 20 // 7 + 5, 30, "retries during the outage")
            notify.process.kill()
            notify.process.wait()
        finally:
            notify.stop()

        outage.down.clear()
        notify = Notify(config, broker.bootstrap, topic, log)
        try:
            _wait(lambda: len(set(outage.accepted)) == 30, 60, "the rest after the restart")
            wait_consumed(broker.bootstrap, f"{run}.splunk", [topic])
        finally:
            notify.stop()

    expected = {f"{r.finding_id}.open" for r in records}
    assert set(outage.accepted) == expected, "nothing lost"
    repeats = [key for key, n in Counter(outage.accepted).items() if n > 1]
    assert repeats == [], "nothing the receiver accepted was sent again"
    text = log.read_text()
    assert "Splunk HEC answered 503" in text
    assert HEC_TOKEN not in text
    assert PD_KEY not in text


class Flaky:
    """A stand-in that, while down, answers 503 and 429 (with Retry-After) in turn, and otherwise
    accepts, keeping what it accepted in order; a PagerDuty event for `refused` is a 400."""

    def __init__(self, kind: str, refused: str | None = None) -> None:
        self.kind = kind
        self.refused = refused
        self.down = threading.Event()
        self.busy = 0
        self.refusals = 0
        self.accepted: list[tuple[str, str]] = []

    def respond(self, seen: Seen, index: int) -> Answer:
        if self.down.is_set():
            self.busy += 1
            if self.busy % 2:
                return Answer(503, {"text": "Server is busy", "code": 9})
            return Answer(429, {"status": "throttled"}, headers={"Retry-After": "1"})
        if self.kind == "hec":
            for event in seen.json_lines():
                record_id = event["fields"]["record_id"]
                self.accepted.append(tuple(record_id.rsplit(".", 1)))  # type: ignore[arg-type]
            return Answer()
        event = seen.json()
        if event["dedup_key"] == self.refused:
            self.refusals += 1
            return Answer(400, {"status": "invalid event", "message": "Event object is invalid"})
        self.accepted.append((event["dedup_key"], event["event_action"]))
        return Answer(202, {"status": "success", "dedup_key": event["dedup_key"]})


def test_503s_and_429s_and_a_kill_mid_outage_deliver_everything_in_order_per_finding(
    broker: EmbeddedBroker, setup: dict[str, Any]
) -> None:
    """Both receivers answer 503 and 429 for a while (a minute under `make soak`), and the
    delivery service is killed in the middle of it: afterwards every record has reached the SIEM
    once, each finding's open before its resolve; the pager got one trigger per finding, then
    its resolve; and the event the pager refused with a 400 was never sent again."""
    home, topic, run = setup["home"], setup["topic"], setup["run"]
    quiet = many(12, severity="low")
    paged = [
        finding(finding_id=f"c{i:031x}", identity_id=f"admin{i}", severity="critical")
        for i in range(4)
    ]
    rejected = paged[-1]
    before = quiet[:6] + paged[:2]
    during = quiet[6:] + paged[2:] + [resolved(r) for r in quiet] + [resolved(r) for r in paged[:3]]
    hec = Flaky("hec")
    pager = Flaky("pd", refused=dedup_key(rejected.finding_id))
    log = home / "notify.log"
    with StandIn(hec.respond) as hec_url, StandIn(pager.respond) as pd_url:
        config = _config(home, hec_url.url, pd_url.url, run)
        _publish(broker.bootstrap, topic, before)
        notify = Notify(config, broker.bootstrap, topic, log)
        try:
            _wait(lambda: len(hec.accepted) >= len(before), 60, "the records before the outage")
            _wait(lambda: len(pager.accepted) == 2, 60, "the first two pages")
            hec.down.set()
            pager.down.set()
            outage_began = time.monotonic()
            _publish(broker.bootstrap, topic, during)
            _wait(lambda: hec.busy >= 4 and pager.busy >= 4, 60, "retries during the outage")
            notify.process.kill()  # kill -9 in the middle of the outage
            notify.process.wait()
        finally:
            notify.stop()
        notify = Notify(config, broker.bootstrap, topic, log)
        try:
            busy = hec.busy
            _wait(lambda: hec.busy > busy, 60, "the restarted service retrying")
            time.sleep(max(0.0, outage_began + soak(8, 60) - time.monotonic()))
            hec.down.clear()
            pager.down.clear()
            everything = len(before) + len(during)
            _wait(lambda: len(set(hec.accepted)) == everything, 90, "every record at the SIEM")
            _wait(lambda: len(pager.accepted) >= 3 + 3, 90, "every page and resolve")
            wait_consumed(broker.bootstrap, f"{run}.splunk", [topic])
            wait_consumed(broker.bootstrap, f"{run}.oncall", [topic])
        finally:
            notify.stop()

    expected = {(r.finding_id, r.status) for r in before + during}
    assert set(hec.accepted) == expected, "nothing lost"
    assert [k for k, n in Counter(hec.accepted).items() if n > 1] == [], "nothing sent twice"
    for record in quiet + paged[:3]:
        order = [status for fid, status in hec.accepted if fid == record.finding_id]
        assert order == ["open", "resolved"], (record.finding_id, order)
    keys = {dedup_key(r.finding_id) for r in paged[:3]}
    for key in keys:
        assert [action for k, action in pager.accepted if k == key] == ["trigger", "resolve"]
    assert {k for k, _ in pager.accepted} == keys
    assert pager.refusals == 1, "a 400 is not retried"
    text = log.read_text()
    assert "429" in text
    assert "503" in text
    assert "400" in text
    assert HEC_TOKEN not in text
    assert PD_KEY not in text


def test_a_second_service_joining_mid_delivery_repeats_nothing(
    broker: EmbeddedBroker, setup: dict[str, Any]
) -> None:
    """The group rebalances while a slow receiver is taking a batch: the batch in flight is
    committed before its partition moves, so the service that gets it does not send it again."""
    home, topic, run = setup["home"], setup["topic"], setup["run"]
    records = many(21, severity="low")
    accepted: list[str] = []

    def slow(seen: Seen, index: int) -> Answer:
        # Slower than the broker takes to complete the rebalance (about 5 s): without the wait
        # the first service would commit after its generation ended.
        accepted.extend(e["fields"]["record_id"] for e in seen.json_lines())
        return Answer(delay_s=7.0 if index == 0 else 0.0)

    with StandIn(slow) as hec, StandIn() as pd:
        config = _config(home, hec.url, pd.url, run)
        _publish(broker.bootstrap, topic, records)
        first = Notify(config, broker.bootstrap, topic, home / "first.log")
        second = None
        try:
            _wait(lambda: len(accepted) >= 7, 60, "the first batch")
            second = Notify(config, broker.bootstrap, topic, home / "second.log")
            _wait(lambda: len(set(accepted)) == 21, 120, "every record")
            wait_consumed(broker.bootstrap, f"{run}.splunk", [topic])
            assert first.process.poll() is None, "the rebalance did not stop the first service"
            assert second.process.poll() is None
        finally:
            first.stop()
            if second is not None:
                second.stop()

    assert set(accepted) == {f"{r.finding_id}.open" for r in records}
    assert [key for key, n in Counter(accepted).items() if n > 1] == [], "nothing sent twice"
    revoked = "Revoking previously assigned partitions frozenset({TopicPartition"
    assert revoked in (home / "first.log").read_text(), "the group rebalanced while delivering"


def test_a_mass_failure_is_one_page_and_resolving_them_all_resolves_it(
    broker: EmbeddedBroker, setup: dict[str, Any]
) -> None:
    home, topic, run = setup["home"], setup["topic"], setup["run"]
    burst = many(40, severity="critical")
    with StandIn() as hec, StandIn(lambda s, i: Answer(202, {"status": "success"})) as pd:
        config = _config(home, hec.url, pd.url, run)
        _publish(broker.bootstrap, topic, burst)
        notify = Notify(config, broker.bootstrap, topic, home / "notify.log")
        try:
            _wait(lambda: len(pd.seen) >= 1, 60, "the page")
            wait_consumed(broker.bootstrap, f"{run}.oncall", [topic])
            # The service's own endpoints sit behind the guard (streams/guard.py).
            metrics = f"http://127.0.0.1:{notify.port}/metrics"
            with urllib.request.urlopen(metrics, timeout=10) as response:
                assert response.status == 200
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"{metrics}?token={PD_KEY}", timeout=10)
            refused.value.close()
            assert refused.value.code == 400
            _publish(broker.bootstrap, topic, [resolved(r) for r in burst])
            _wait(lambda: len(pd.seen) >= 2, 60, "the resolve")
            wait_consumed(broker.bootstrap, f"{run}.oncall", [topic])
        finally:
            notify.stop()

    events = [s.json() for s in pd.seen]
    assert [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["payload"]["custom_details"]["count"] == 40
    assert events[0]["dedup_key"] == events[1]["dedup_key"]


def test_alertmanager_alerts_still_open_are_re_sent_after_a_restart(
    broker: EmbeddedBroker, setup: dict[str, Any]
) -> None:
    home, topic, run = setup["home"], setup["topic"], setup["run"]
    still_open, closed = many(2, severity="high")
    with StandIn() as am:
        config = home / "notify.toml"
        config.write_text(
            f'group_prefix = "{run}"\nlinger = "0s"\n'
            f'[[sink]]\nname = "am"\ntype = "alertmanager"\nurl = "{am.url}"\n'
            'resend_interval = "1s"\n'
        )
        _publish(broker.bootstrap, topic, [still_open, closed, resolved(closed)])
        notify = Notify(config, broker.bootstrap, topic, home / "notify.log")
        try:
            wait_consumed(broker.bootstrap, f"{run}.am", [topic], 60)
        finally:
            notify.process.kill()
            notify.stop()
        before = len(am.seen)
        notify = Notify(config, broker.bootstrap, topic, home / "notify.log")
        try:
            _wait(lambda: len(am.seen) >= before + 2, 60, "re-sends after the restart")
        finally:
            notify.stop()

    resent = [s.json() for s in am.seen[before:]]
    assert all(s.path == "/api/v2/alerts" for s in am.seen)
    for alerts in resent:
        assert [a["labels"]["finding_id"] for a in alerts] == [still_open.finding_id]
        assert "endsAt" not in alerts[0]


def test_a_second_kafka_topic_gets_the_chosen_format_keyed_by_finding(
    broker: EmbeddedBroker, setup: dict[str, Any]
) -> None:
    target = f"{setup['run']}.cef"
    create_topics(broker.bootstrap, [target])
    records = many(3)
    sink = FormattedSink(
        "connector", FORMATTERS["cef"], KafkaTopic(broker.bootstrap, KafkaSecurity(), target)
    )

    async def go() -> None:
        try:
            await sink.deliver([*records, resolved(records[0])])
        finally:
            await sink.close()

    asyncio.run(go())
    received = read_topic(broker.bootstrap, target, 4)
    assert sorted(value.decode().split("externalId=")[1][:32] for _, _, value, _ in received) == (
        sorted([r.finding_id for r in records] + [records[0].finding_id])
    )
    by_key: dict[bytes | None, set[int]] = {}
    for partition, key, value, _ in received:
        assert value.startswith(b"CEF:0|accessdrift|")
        by_key.setdefault(key, set()).add(partition)
    assert all(len(parts) == 1 for parts in by_key.values()), "a finding stays on one partition"
