"""A worker after a live scenario, with its API token: the `scenario` fixture of the API and
status-page tests (tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from accessdrift.streams.broker import EmbeddedBroker
from tests.streams.test_worker import Worker
from tests.workers import WorkerProcess, worker_env

TOKEN = "api-token-5ee3b1"
POLICY = """
[leaver]
window = "6s"
privileged_window = "3s"
"""


@dataclass
class Scenario:
    worker: Worker
    url: str
    alice: str
    bob: str
    log: Path


def _at(base: datetime, offset_s: float) -> str:
    return (base + timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def _events(alice: str, bob: str) -> list[dict[str, object]]:
    """Two leavers terminated 30 s ago. alice's admin role goes after 1 s (within its 3 s
    window), her chat seat after 8 s (its window is 6 s); bob's admin role after 5 s (late) and
    his tracker seat never."""
    base = datetime.now(UTC) - timedelta(seconds=30)

    def status(who: str, event: str, at: float, value: str) -> dict[str, object]:
        return {
            "topic": "identity.status",
            "value": {"event_id": event, "occurred_at": _at(base, at), "identity_id": who,
                      "status": value},
        }  # fmt: skip

    def change(who: str, event: str, at: float, system: str, action: str, privileged: bool):  # type: ignore[no-untyped-def]
        return {
            "topic": "entitlement.change",
            "value": {"event_id": event, "occurred_at": _at(base, at), "identity_id": who,
                      "system": system, "entitlement": "admin" if privileged else "seat",
                      "action": action, "privileged": privileged},
        }  # fmt: skip

    return [
        status(alice, "a1", -60, "active"),
        {
            "topic": "device.posture",
            "value": {
                "event_id": "d1",
                "occurred_at": _at(base, -59),
                "device_id": f"mac-{alice}",
                "posture": "compliant",
                "identity_ids": [alice],
            },
        },
        change(alice, "a2", -58, "github", "granted", True),
        change(alice, "a3", -58, "slack", "granted", False),
        status(bob, "b1", -60, "active"),
        change(bob, "b2", -58, "github", "granted", True),
        change(bob, "b3", -58, "jira", "granted", False),
        status(alice, "a4", 0, "terminated"),
        status(bob, "b4", 0, "terminated"),
        change(alice, "a5", 1, "github", "revoked", True),
        change(alice, "a6", 8, "slack", "revoked", False),
        change(bob, "b5", 5, "github", "revoked", True),
    ]


@pytest.fixture(scope="module")
def scenario(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    home = tmp_path_factory.mktemp("api")
    (home / "policy.toml").write_text(POLICY)
    env = worker_env(broker, uuid.uuid4().hex[:8], home / "policy.toml", 0, home / "data")
    env["ACCESSDRIFT_API_TOKEN"] = TOKEN
    process = WorkerProcess(env, home, "worker")
    try:
        process.wait_ready()
        worker = Worker(broker, env, process.web_port)
        suffix = uuid.uuid4().hex[:6]
        alice, bob = f"alice-{suffix}", f"bob-{suffix}"
        worker.produce(home, *_events(alice, bob))
        records = [r for r in worker.findings(5, 60) if r["record_type"] == "finding"]
        assert len(records) == 5, records
        yield Scenario(worker, f"http://127.0.0.1:{process.web_port}", alice, bob, process.log)
    finally:
        process.stop()
