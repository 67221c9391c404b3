"""Poison records mixed into live traffic at 1 %: every one reaches the dead-letter topic, with
headers naming why and where it came from; none changes a finding; none of their bytes reaches
the worker's log. (Their cost against clean traffic is measured by `bench/poison_bench.py`.)"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.ingest import HEADER_ERROR, HEADER_OFFSET, HEADER_PARTITION, HEADER_TOPIC
from accessdrift.streams.poison import KINDS, MARKER, mix
from tests.faults import Rig, organisation, soak
from tests.kafka import read_topic
from tests.streams.test_faults import _judge
from tests.workers import HEAVY

pytestmark = HEAVY


def test_poison_at_one_percent_of_live_traffic_is_dead_lettered_exactly(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    org = organisation(int(soak(400, 3000)), 24)
    records = mix(org.events, 0.01, seed=5)
    injected = [r for r in records if r.poison is not None]
    assert {r.poison for r in injected} == set(KINDS), "every kind is in the mix"
    rig = Rig(broker, tmp_path)
    deadletter = rig.env["ACCESSDRIFT_TOPIC_DEADLETTER"]
    try:
        worker = rig.start()
        rig.feed(records, soak(15, 120)).join()
        rig.produce([org.clock_event()])
        verdict = _judge(rig, org, f"poison, {len(injected)} of {len(records)} records")
        assert verdict.repeats == {}
        dead = read_topic(rig.bootstrap, deadletter, len(injected) + 1, timeout_s=10)
    finally:
        rig.stop_all()

    assert len(dead) == len(injected), "the dead-letter count equals the injected count"
    by_topic = {topic: stream for stream, topic in rig.topics.items()}
    origins = Counter()
    for _, key, value, headers in dead:
        named = dict(headers)
        assert set(named) == {HEADER_ERROR, HEADER_TOPIC, HEADER_PARTITION, HEADER_OFFSET}
        assert named[HEADER_ERROR], "the reason"
        assert int(named[HEADER_OFFSET]) >= 0
        assert int(named[HEADER_PARTITION]) >= 0
        origins[(by_topic[named[HEADER_TOPIC].decode()], key, value)] += 1
    assert origins == Counter((r.stream, r.key, r.value) for r in injected), "kept as they came"
    log = worker.log.read_text(errors="replace")
    assert MARKER not in log, "no payload (nor key) of a poison record in the log"
    assert log.count("dead-lettered") == len(injected)
