"""Faults against real worker processes on the embedded broker, each judged against the
simulator's ground truth: a kill -9 loop, every worker down while deadlines pass, workers
joining and leaving, replay of the whole input from offset zero. (Broker loss and the data
directory are in test_faults_broker.py and test_faults_disk.py.)

Every test: the findings on the topic, reduced by (finding_id, status), equal the truth; a
record published more than once is the same bytes (the outbox window: stored, published, killed
before the clearing write), and those repeats are counted and printed; the paging stand-in,
fed the whole findings topic through `accessdrift notify`, gets one trigger per open finding.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import Counter
from pathlib import Path

from accessdrift.models.findings import FindingRecord, decode_record
from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.alerts.standins import Answer, StandIn
from tests.faults import Organisation, Rig, Verdict, every, organisation, soak
from tests.kafka import wait_consumed
from tests.workers import ACCESSDRIFT, HEAVY

pytestmark = HEAVY


def _pages(rig: Rig, home: Path) -> Counter[str]:
    """Run `accessdrift notify` over the whole findings topic into a PagerDuty stand-in that
    pages on every finding; the triggers per dedup key."""
    config = home / "notify.toml"
    with StandIn(lambda s, i: Answer(202, {"status": "success"})) as pd:
        config.write_text(
            f'group_prefix = "{rig.run}.pages"\nlinger = "0s"\n[[sink]]\nname = "oncall"\n'
            f'type = "pagerduty"\nurl = "{pd.url}/v2/enqueue"\n'
            'routing_key = { env = "PD_KEY" }\nmin_severity = "low"\ngroup_above = 100000\n'
            "rate_per_minute = 10000\n"
        )
        with (home / "notify.log").open("wb") as log:
            notify = subprocess.Popen(
                [ACCESSDRIFT, "notify", "--config", str(config), "--web-port", str(free_port())],
                env={**rig.env, "PD_KEY": "pd-key-3"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_consumed(rig.bootstrap, f"{rig.run}.pages.oncall", [rig.findings_topic], 120)
        finally:
            notify.terminate()
            notify.wait(30)
        events = [s.json() for s in pd.seen]
    return Counter(e["dedup_key"] for e in events if e["event_action"] == "trigger")


def _judge(rig: Rig, org: Organisation, what: str) -> Verdict:
    records = rig.records(org.expected_records, 240)
    verdict = rig.verdict(org, records)
    print(f"{what}: {verdict.describe()}")
    assert verdict.agreement.agrees, rig.explain(org, verdict.agreement)
    assert verdict.repeats_identical, "a repeat differs from the record first published"
    assert rig.misplaced() == [], "every table write is on its key's changelog partition"
    rig.inboxes_committed()
    triggers = _pages(rig, rig.home)
    opened = {r.finding_id for r in records if isinstance(r, FindingRecord)}
    assert len(triggers) == len(opened)
    assert max(triggers.values(), default=1) == 1, "one trigger per finding"
    return verdict


def test_a_worker_killed_every_10_to_20_s_while_events_flow_misses_and_forges_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    org = organisation(int(soak(600, 3000)), 21)
    rig = Rig(broker, tmp_path)
    chaos = random.Random(7)
    try:
        current = rig.start()
        feed = rig.feed(org.events, soak(35, 300))

        def kill_and_restart() -> None:
            nonlocal current
            current.kill()
            current = rig.start(wait=False)

        kills = every(lambda: chaos.uniform(10, 20), kill_and_restart, soak(40, 300))
        feed.join()
        rig.produce([org.clock_event()])
        verdict = _judge(rig, org, f"crash loop, {kills} kills")
        assert kills >= 2
        assert sum(n - 1 for n in verdict.repeats.values()) <= kills * 64, "repeats stay small"
    finally:
        rig.stop_all()


def test_deadlines_that_pass_while_every_worker_is_down_fire_once_after_the_restart(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    org = organisation(int(soak(500, 3000)), 22)
    half = len(org.events) // 2
    rig = Rig(broker, tmp_path)
    try:
        worker = rig.start()
        rig.produce(org.events[:half])
        rig.consumed()
        worker.kill()
        # Down: the rest of the history, and the deadlines in it, pile up in the input topics.
        rig.produce([*org.events[half:], org.clock_event()])
        rig.start()
        restarted = time.monotonic()
        rig.consumed()
        rig.inboxes_committed(240)  # the worker has read and committed its whole backlog
        caught_up = time.monotonic()
        rig.published(org.expected_records, 240)
        complete = time.monotonic()
        verdict = _judge(rig, org, "downtime")
        assert verdict.repeats == {}, "nothing was in flight when the worker was killed"
        print(
            f"downtime: backlog of {len(org.events) - half} events read {caught_up - restarted:.1f}"
            f" s after the restart; findings complete {max(0.0, complete - caught_up):.1f} s after"
        )
    finally:
        rig.stop_all()

    # Replay of the whole input from offset zero (the ingest group's offsets reset): the state
    # already holds every event, so nothing new is published and nobody is paged again.
    before = rig.raw_records()
    rig.reset_input_offsets()
    try:
        rig.start()
        rig.consumed()
        time.sleep(5)  # a finding would be published within a tick of its event being read
    finally:
        rig.stop_all()
    new = Counter(rig.raw_records()) - Counter(before)
    assert [decode_record(value) for value in new] == [], "replaying the input published nothing"


def test_workers_joining_and_leaving_during_the_feed_change_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A second and a third worker join; the second leaves cleanly, the third is killed."""
    org = organisation(int(soak(500, 3000)), 23)
    rig = Rig(broker, tmp_path)
    try:
        rig.start()
        feed = rig.feed(org.events, soak(32, 240))
        step_s = soak(7, 40)
        time.sleep(step_s)
        second = rig.start(wait=False)
        time.sleep(step_s)
        third = rig.start(wait=False)
        time.sleep(step_s)
        second.stop()
        time.sleep(step_s)
        third.kill()
        feed.join()
        rig.produce([org.clock_event()])
        _judge(rig, org, "rebalance")
    finally:
        rig.stop_all()
