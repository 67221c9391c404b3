"""Crash recovery and scale-out, with real worker processes on the real embedded broker.

A worker is killed with SIGKILL after it has published some findings and while other deadlines
are pending; a new worker restores state from the changelog. Every expected finding must be
published, and none twice. Two workers sharing the group must publish what one worker does.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from accessdrift.streams.broker import EmbeddedBroker
from accessdrift.streams.inbox import Partitioner
from accessdrift.streams.store import FINDING, Outgoing, Stored
from tests.kafka import read_topic, send_raw
from tests.workers import ACCESSDRIFT, HEAVY, WorkerProcess, worker_env

pytestmark = HEAVY

POLICY = """
[leaver]
privileged_window = "4s"
window = "14s"
[joiner]
window = "1h"
"""
GRACE_S = 3
PEOPLE = 12


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _story(
    run: str, terminated: datetime
) -> tuple[list[dict[str, Any]], Counter[tuple[str, str, str]]]:
    """Events for PEOPLE leavers and the findings they must produce.

    Group by person number % 4: 0 revokes both entitlements in time; 1 revokes the privileged
    one late (open, then resolved); 2 revokes only the unprivileged one; 3 revokes nothing.
    """
    before = terminated - timedelta(minutes=5)
    lines: list[dict[str, Any]] = []
    expected: Counter[tuple[str, str, str]] = Counter()
    for number in range(PEOPLE):
        who = f"{run}-u{number:02d}"
        lines += [
            {
                "topic": "identity.status",
                "value": {
                    "event_id": f"{who}-s1",
                    "occurred_at": _at(before),
                    "identity_id": who,
                    "status": "active",
                },
            },
            {
                "topic": "device.posture",
                "value": {
                    "event_id": f"{who}-d1",
                    "occurred_at": _at(before),
                    "device_id": f"{who}-mac",
                    "posture": "compliant",
                    "identity_ids": [who],
                },
            },
            {
                "topic": "entitlement.change",
                "value": {
                    "event_id": f"{who}-g1",
                    "occurred_at": _at(before),
                    "identity_id": who,
                    "system": "github",
                    "entitlement": "admin",
                    "action": "granted",
                    "privileged": True,
                },
            },
            {
                "topic": "entitlement.change",
                "value": {
                    "event_id": f"{who}-g2",
                    "occurred_at": _at(before),
                    "identity_id": who,
                    "system": "slack",
                    "entitlement": "workspace",
                    "action": "granted",
                },
            },
            {
                "topic": "identity.status",
                "value": {
                    "event_id": f"{who}-s2",
                    "occurred_at": _at(terminated),
                    "identity_id": who,
                    "status": "terminated",
                },
            },
        ]
        group = number % 4
        revokes = {
            0: [("github", 1), ("slack", 1)],
            1: [("github", 6), ("slack", 1)],
            2: [("slack", 1)],
            3: [],
        }[group]
        for system, after_s in revokes:
            entitlement = "admin" if system == "github" else "workspace"
            lines.append(
                {
                    "topic": "entitlement.change",
                    "value": {
                        "event_id": f"{who}-r-{system}",
                        "occurred_at": _at(terminated + timedelta(seconds=after_s)),
                        "identity_id": who,
                        "system": system,
                        "entitlement": entitlement,
                        "action": "revoked",
                    },
                }
            )
        if group in (1, 2, 3):
            expected[(who, "github", "open")] += 1
        if group == 1:
            expected[(who, "github", "resolved")] += 1
        if group == 3:
            expected[(who, "slack", "open")] += 1
    return lines, expected


def _produce(env: dict[str, str], path: Path, lines: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = subprocess.run(
        [ACCESSDRIFT, "produce", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _findings(
    broker: EmbeddedBroker, env: dict[str, str], findings: int, timeout_s: float
) -> list[dict[str, Any]]:
    """The finding records on the findings topic once `findings` of them are there (or the
    timeout passes), read again after a pause so that a late duplicate would be seen too."""
    topic = env["ACCESSDRIFT_TOPIC_FINDINGS"]
    deadline = time.monotonic() + timeout_s
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        raw = read_topic(broker.bootstrap, topic, 10_000, timeout_s=1.5)
        records = [json.loads(value) for _, _, value, _ in raw]
        if sum(r["record_type"] == "finding" for r in records) >= findings:
            break
    time.sleep(2)
    raw = read_topic(broker.bootstrap, topic, 10_000, timeout_s=1.5)
    return [
        r for r in (json.loads(value) for _, _, value, _ in raw) if r["record_type"] == "finding"
    ]


def _setup(broker: EmbeddedBroker, tmp_path: Path) -> tuple[str, dict[str, str]]:
    run = uuid.uuid4().hex[:8]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    return run, worker_env(broker, run, policy, GRACE_S, tmp_path / "data")


def test_a_killed_worker_is_replaced_without_losing_or_repeating_findings(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    run, env = _setup(broker, tmp_path)
    first = WorkerProcess(env, tmp_path, "first")
    second = None
    try:
        first.wait_ready()
        terminated = datetime.now(UTC) + timedelta(seconds=2)
        lines, expected = _story(run, terminated)
        _produce(env, tmp_path / "story.jsonl", lines)
        privileged_due = terminated + timedelta(seconds=4 + GRACE_S)
        # Let the first worker publish the privileged findings, then kill it before the
        # unprivileged deadlines (14 s) pass: those are still pending in its state.
        github = sum(n for (_, system, _), n in expected.items() if system == "github")
        seen = _findings(broker, env, github, timeout_s=40)
        assert all(r["system"] == "github" for r in seen)
        assert len(seen) == github, seen
        assert datetime.now(UTC) < terminated + timedelta(seconds=14 + GRACE_S)
        assert datetime.now(UTC) > privileged_due
        time.sleep(1)
        first.kill()

        second = WorkerProcess(env, tmp_path, "second")
        second.wait_ready()
        published = _findings(broker, env, sum(expected.values()), timeout_s=40)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    counts = Counter((r["finding_id"], r["status"]) for r in published)
    assert [key for key, n in counts.items() if n > 1] == []
    assert Counter((r["identity_id"], r["system"], r["status"]) for r in published) == expected


def test_two_workers_in_one_group_publish_what_one_worker_does(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    run, env = _setup(broker, tmp_path)
    workers = [WorkerProcess(env, tmp_path, "one"), WorkerProcess(env, tmp_path, "two")]
    try:
        for worker in workers:
            worker.wait_ready()
        time.sleep(8)
        terminated = datetime.now(UTC) + timedelta(seconds=1)
        lines, expected = _story(run, terminated)
        _produce(env, tmp_path / "story.jsonl", lines)
        published = _findings(broker, env, sum(expected.values()), timeout_s=14 + GRACE_S + 25)
        logs = [worker.log.read_text(errors="replace") for worker in workers]
    finally:
        for worker in workers:
            worker.stop()

    counts = Counter((r["finding_id"], r["status"]) for r in published)
    assert [key for key, n in counts.items() if n > 1] == []
    assert Counter((r["identity_id"], r["system"], r["status"]) for r in published) == expected
    assert all("Ready" in log for log in logs)


def _latest_states(bootstrap: str, changelog: str) -> dict[bytes, tuple[int, Stored]]:
    """The identities table as its changelog holds it: key → (changelog partition, value)."""
    latest = {}
    for partition, key, value, _ in read_topic(bootstrap, changelog, 10**9, 5):
        if key is not None and value is not None:
            latest[key] = (partition, msgspec.msgpack.decode(value, type=Stored))
    return latest


def test_outboxes_a_crash_left_are_published_by_a_step_of_their_own_partition(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """A crash between the write of a step's outbox and its clearing leaves records waiting in
    identities of several partitions. The next worker publishes them again (the same bytes), and
    every write that clears an outbox lands on its key's changelog partition: faust writes a
    change to the partition of the event being processed, and a state written to another
    partition is read back over newer state, or dropped, by a later recovery."""
    run, env = _setup(broker, tmp_path)
    changelog = f"{env['ACCESSDRIFT_APP_ID']}-identities-changelog"
    findings_topic = env["ACCESSDRIFT_TOPIC_FINDINGS"]
    partition_of = Partitioner(int(env["ACCESSDRIFT_PARTITIONS"]))
    first = WorkerProcess(env, tmp_path, "first")
    try:
        first.wait_ready()
        lines, expected = _story(run, datetime.now(UTC) + timedelta(seconds=1))
        _produce(env, tmp_path / "story.jsonl", lines)
        # The privileged findings (due in seconds) are enough to leave records waiting.
        _findings(broker, env, sum(n for (_, s, _), n in expected.items() if s == "github"), 40)
    finally:
        first.stop()

    # What a crash right after each finding's outbox write would have left: the finding still
    # in the outbox of the latest state.
    published = read_topic(broker.bootstrap, findings_topic, 10_000, timeout_s=3)
    latest = _latest_states(broker.bootstrap, changelog)
    waiting: dict[bytes, Stored] = {}
    for _, key, value, _ in published:
        assert key is not None
        stored = waiting.setdefault(key, latest[key][1])
        stored.outbox.append(Outgoing(FINDING, key, value))
    assert len({partition_of(key) for key in waiting}) > 1, "outboxes wait in several partitions"
    for key, stored in waiting.items():
        value = msgspec.msgpack.encode(stored)
        send_raw(broker.bootstrap, changelog, key, value, partition_of(key))

    second = WorkerProcess(env, tmp_path, "second")
    try:
        second.wait_ready()
        deadline = time.monotonic() + 60
        again = 0
        while time.monotonic() < deadline and again < 2 * len(published):
            again = len(read_topic(broker.bootstrap, findings_topic, 10_000, 1.5))
        time.sleep(2)  # until every clearing write is in the changelog
    finally:
        second.stop()

    waited = {value for _, _, value, _ in published}
    counts = Counter(v for _, _, v, _ in read_topic(broker.bootstrap, findings_topic, 10_000, 1.5))
    assert [counts[value] for value in waited] == [2] * len(waited)
    # Only what waited is published twice (the second worker goes on to fire what comes due).
    assert [value for value, n in counts.items() if n > 1 and value not in waited] == []
    misplaced = [
        (partition, key)
        for partition, key, _, _ in read_topic(broker.bootstrap, changelog, 10**9, 5)
        if key is not None and partition != partition_of(key)
    ]
    assert misplaced == []
    cleared = _latest_states(broker.bootstrap, changelog)
    assert [key for key in waiting if cleared[key][1].outbox] == []
