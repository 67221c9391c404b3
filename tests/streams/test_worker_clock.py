"""The worker's clock against the real broker and real worker processes: deadlines fire against
the watermark of every input partition, not against the latest event seen or bare wall time.

* Wall clock, after downtime: a backlog where leavers sit on `identity.status` and their on-time
  revocations behind thousands of other records on `entitlement.change`, every deadline already
  past when the worker starts: no false finding, every true one exactly once, and silent streams
  (no device or exception records at all) hold nothing back.
* Event clock: the clock survives a restart, and two workers in one group share it.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.ingest import ingest_group
from tests.kafka import create_topics, produce_events, read_topic, wait_consumed
from tests.workers import HEAVY, WorkerProcess, wait_for, worker_env

STREAMS = ("identity.status", "device.posture", "entitlement.change", "access.exception")
POLICY = """
[leaver]
privileged_window = "1h"
window = "1h"
"""
FILLER = 12_000
LEAVERS = 30


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _topics(env: dict[str, str]) -> dict[str, str]:
    return {s: env[f"ACCESSDRIFT_TOPIC_{s.replace('.', '_').upper()}"] for s in STREAMS}


def _env(broker: EmbeddedBroker, tmp_path: Path, **extra: str) -> dict[str, str]:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = worker_env(broker, uuid.uuid4().hex[:8], policy, 0, tmp_path / "data")
    env.update(extra)
    create_topics(broker.bootstrap, [*_topics(env).values(), env["ACCESSDRIFT_TOPIC_FINDINGS"]])
    return env


def _grant(who: str, event_id: str, at: datetime, action: str = "granted") -> dict[str, Any]:
    return {
        "topic": "entitlement.change",
        "value": {
            "event_id": event_id,
            "occurred_at": _at(at),
            "identity_id": who,
            "system": "aws",
            "entitlement": "prod-admin",
            "action": action,
            "privileged": True,
        },
    }


def _status(who: str, event_id: str, at: datetime, status: str) -> dict[str, Any]:
    return {
        "topic": "identity.status",
        "value": {
            "event_id": event_id,
            "occurred_at": _at(at),
            "identity_id": who,
            "status": status,
        },
    }


def _findings(broker: EmbeddedBroker, env: dict[str, str]) -> list[dict[str, Any]]:
    raw = read_topic(broker.bootstrap, env["ACCESSDRIFT_TOPIC_FINDINGS"], 100_000, timeout_s=2)
    records = (json.loads(value) for _, _, value, _ in raw)
    return [r for r in records if r["record_type"] == "finding"]


def test_a_backlog_read_after_downtime_raises_no_false_finding(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    env = _env(broker, tmp_path)
    topics = _topics(env)
    now = datetime.now(UTC)
    terminated = now - timedelta(hours=3)
    run = env["ACCESSDRIFT_APP_ID"]
    grants, statuses, fillers, revokes = [], [], [], []
    expected: Counter[tuple[str, str]] = Counter()
    for number in range(LEAVERS):
        who = f"{run}-leaver{number:02d}"
        grants.append(_grant(who, f"{who}-g", terminated - timedelta(hours=1)))
        statuses.append(_status(who, f"{who}-t", terminated, "terminated"))
        group = number % 3
        if group == 0:  # revoked on time: must never be reported
            revokes.append(_grant(who, f"{who}-r", terminated + timedelta(minutes=30), "revoked"))
        elif group == 1:  # revoked late: open and resolved, once each
            revokes.append(_grant(who, f"{who}-r", terminated + timedelta(hours=2), "revoked"))
            expected[(who, "open")] += 1
            expected[(who, "resolved")] += 1
        else:  # never revoked: open once
            expected[(who, "open")] += 1
    for number in range(FILLER):
        who = f"{run}-other{number:05d}"
        fillers.append(_grant(who, f"{who}-g", terminated + timedelta(minutes=number % 29)))
    # Everything is on the topics before the worker starts: the revocations behind the filler.
    produce_events(broker.bootstrap, topics, grants + statuses + fillers + revokes)

    worker = WorkerProcess(env, tmp_path, "worker")
    try:
        worker.wait_ready()
        wait_consumed(broker.bootstrap, ingest_group(run), list(topics.values()), timeout_s=180)
        # Caught up: the clock is at wall time now, every deadline is past; let them fire.
        wanted = sum(expected.values())
        wait_for(lambda: len(_findings(broker, env)) >= wanted, 60, worker.log)
        time.sleep(3)
        published = _findings(broker, env)
    finally:
        worker.stop()

    counts = Counter((r["finding_id"], r["status"]) for r in published)
    assert [key for key, n in counts.items() if n > 1] == []
    assert Counter((r["identity_id"], r["status"]) for r in published) == expected


def _clocks(worker: WorkerProcess) -> dict[str, float]:
    """Each partition's clock as the worker reports it (wall time now minus the reported lag)."""
    scraped_at = time.time()
    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/metrics", timeout=10).read()
    found = re.findall(
        r'^accessdrift_clock_lag_seconds\{partition="(\d+)"\} (\S+)$', text.decode(), re.M
    )
    return {partition: scraped_at - float(lag) for partition, lag in found}


@HEAVY  # three worker processes, two at once
def test_the_event_clock_survives_a_restart_and_is_shared_by_every_worker(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    env = _env(broker, tmp_path, ACCESSDRIFT_CLOCK="event")
    topics = _topics(env)
    run = env["ACCESSDRIFT_APP_ID"]
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    history = [
        _status(f"{run}-u{number}", f"{run}-s{number}", start + timedelta(hours=number), "active")
        for number in range(40)
    ]
    latest = (start + timedelta(hours=39)).timestamp()
    produce_events(broker.bootstrap, topics, history)

    first = WorkerProcess(env, tmp_path, "first")
    try:
        first.wait_ready()
        wait_for(lambda: (c := _clocks(first)) and min(c.values()) > latest - 5, 90, first.log)
    finally:
        first.stop()

    # Restarted with no new input: the clock comes back from the table where it was, not from
    # the beginning of time, and both workers report the same clock.
    workers = [WorkerProcess(env, tmp_path, "again"), WorkerProcess(env, tmp_path, "other")]
    try:
        for worker in workers:
            worker.wait_ready()

        def shared() -> bool:
            clocks = [value for worker in workers for value in _clocks(worker).values()]
            return len(clocks) == 4 and max(clocks) - min(clocks) < 5

        wait_for(shared, 90, workers[0].log)
        clocks = [value for worker in workers for value in _clocks(worker).values()]
    finally:
        for worker in workers:
            worker.stop()

    assert all(abs(clock - latest) < 5 for clock in clocks), (clocks, latest)
