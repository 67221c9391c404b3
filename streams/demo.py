"""`accessdrift demo`: the live pipeline end to end on this machine, in about a minute and a half.

Starts the embedded broker and a worker, feeds a scripted story of a small company's morning
through Kafka in real time (with a demo policy whose control windows are seconds), and prints
every finding and offboarding record as the worker publishes it. Ctrl-C stops everything; no
process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from accessdrift.alerts.sinks import TextSink
from accessdrift.models.findings import Record, decode_record
from accessdrift.streams.broker import EmbeddedBroker, free_port, stop_process_group
from accessdrift.streams.settings import Topics

DEMO_POLICY: Final = """\
# Demo policy: the shipped windows shrunk to seconds so a morning fits in a minute.
[leaver]
window = "40s"
privileged_window = "10s"
[suspension]
window = "10s"
[mover]
window = "20s"
[device_untrusted]
lost_window = "8s"
unenrolled_window = "15s"
noncompliant_window = "20s"
[owner_departed]
window = "45s"
[joiner]
window = "30s"
"""
GRACE_S: Final = 2

#: (seconds after start, stream, event fields); event_id and occurred_at are filled in live.
STORY: Final[list[tuple[float, str, dict[str, Any]]]] = [
    (0, "identity.status", {"identity_id": "alice", "status": "active", "role": "engineer"}),
    (0, "identity.status", {"identity_id": "bob", "status": "active", "role": "sales"}),
    (0, "identity.status", {"identity_id": "carol", "status": "active", "role": "engineer"}),
    (0, "identity.status", {"identity_id": "erin", "status": "active", "role": "designer"}),
    (
        0.5,
        "device.posture",
        {"device_id": "mac-alice", "posture": "compliant", "identity_ids": ["alice"]},
    ),
    (
        0.5,
        "device.posture",
        {"device_id": "mac-bob", "posture": "compliant", "identity_ids": ["bob"]},
    ),
    (
        0.5,
        "device.posture",
        {"device_id": "mac-carol", "posture": "compliant", "identity_ids": ["carol"]},
    ),
    (
        1,
        "identity.status",
        {
            "identity_id": "svc-deploy",
            "status": "active",
            "identity_kind": "service_account",
            "owner_id": "alice",
        },
    ),
    (
        1,
        "entitlement.change",
        {
            "identity_id": "alice",
            "system": "github",
            "entitlement": "org:acme/admin",
            "action": "granted",
            "privileged": True,
        },
    ),
    (
        1,
        "entitlement.change",
        {
            "identity_id": "alice",
            "system": "slack",
            "entitlement": "workspace:acme",
            "action": "granted",
            "kind": "group",
        },
    ),
    (
        1,
        "entitlement.change",
        {
            "identity_id": "bob",
            "system": "okta",
            "entitlement": "session:mac-bob",
            "action": "granted",
            "kind": "session",
            "device_id": "mac-bob",
        },
    ),
    (
        1,
        "entitlement.change",
        {
            "identity_id": "bob",
            "system": "vpn",
            "entitlement": "corp-tunnel",
            "action": "granted",
            "requires_trusted_device": True,
        },
    ),
    (
        1,
        "entitlement.change",
        {
            "identity_id": "carol",
            "system": "aws",
            "entitlement": "prod/AdministratorAccess",
            "action": "granted",
            "privileged": True,
        },
    ),
    (5, "identity.status", {"identity_id": "alice", "status": "terminated", "role": "engineer"}),
    (
        8,
        "entitlement.change",
        {
            "identity_id": "alice",
            "system": "slack",
            "entitlement": "workspace:acme",
            "action": "revoked",
        },
    ),
    (
        22,
        "entitlement.change",
        {
            "identity_id": "alice",
            "system": "github",
            "entitlement": "org:acme/admin",
            "action": "revoked",
        },
    ),
    (25, "device.posture", {"device_id": "mac-bob", "posture": "lost", "identity_ids": ["bob"]}),
    (
        28,
        "entitlement.change",
        {
            "identity_id": "bob",
            "system": "okta",
            "entitlement": "session:mac-bob",
            "action": "revoked",
        },
    ),
    (30, "identity.status", {"identity_id": "carol", "status": "active", "role": "manager"}),
    (
        35,
        "entitlement.change",
        {
            "identity_id": "alice",
            "system": "jira",
            "entitlement": "project:ACME",
            "action": "granted",
        },
    ),
    (
        44,
        "device.posture",
        {"device_id": "mac-bob-2", "posture": "compliant", "identity_ids": ["bob"]},
    ),
    (
        45,
        "device.posture",
        {"device_id": "mac-erin", "posture": "compliant", "identity_ids": ["erin"]},
    ),
    (
        62,
        "entitlement.change",
        {
            "identity_id": "carol",
            "system": "aws",
            "entitlement": "prod/AdministratorAccess",
            "action": "revoked",
        },
    ),
    (
        64,
        "entitlement.change",
        {
            "identity_id": "alice",
            "system": "jira",
            "entitlement": "project:ACME",
            "action": "revoked",
        },
    ),
]
STORY_END_S: Final = 85.0


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


async def _feed(bootstrap: str, topics: Topics, started: float, out: TextIO) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for number, (offset_s, stream, fields) in enumerate(STORY, start=1):
            await asyncio.sleep(max(0.0, started + offset_s - time.monotonic()))
            value = {"event_id": f"demo-{number}", "occurred_at": _now(), **fields}
            key = str(fields["device_id"] if stream == "device.posture" else fields["identity_id"])
            await producer.send_and_wait(
                topics.for_stream(stream), msgspec.json.encode(value), key=key.encode()
            )
            described = ", ".join(f"{k}={v}" for k, v in fields.items() if k != "identity_ids")
            out.write(f"{_now()}  {'event':<9} {stream:<19} {described}\n")
            out.flush()
    finally:
        await producer.stop()


async def _watch(bootstrap: str, topic: str, sink: TextSink, stop: asyncio.Event) -> int:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    shown = 0
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=250)).values():
                for message in messages:
                    record: Record = decode_record(message.value)
                    sink.emit(record)
                    shown += 1
            sink.flush()
    finally:
        await consumer.stop()
    return shown


async def _run(bootstrap: str, topics: Topics, out: TextIO, stop: asyncio.Event) -> int:
    started = time.monotonic()
    watcher = asyncio.create_task(_watch(bootstrap, topics.findings, TextSink(out), stop))
    feeder = asyncio.create_task(_feed(bootstrap, topics, started, out))
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=STORY_END_S)
    stop.set()
    feeder.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeder
    return await watcher


def _start_worker(broker: EmbeddedBroker, workdir: Path, topics: Topics) -> subprocess.Popen[bytes]:
    policy = workdir / "demo-policy.toml"
    policy.write_text(DEMO_POLICY)
    env = {
        **os.environ,
        "ACCESSDRIFT_BROKER": broker.bootstrap,
        "ACCESSDRIFT_APP_ID": "accessdrift-demo",
        "ACCESSDRIFT_POLICY": str(policy),
        "ACCESSDRIFT_PARTITIONS": "4",
        "ACCESSDRIFT_WEB_PORT": str(free_port()),
        "ACCESSDRIFT_GRACE_S": str(GRACE_S),
        "ACCESSDRIFT_SESSION_TIMEOUT_S": "6",
        "ACCESSDRIFT_DATA_DIR": str(workdir / "data"),
        "ACCESSDRIFT_TOPIC_FINDINGS": topics.findings,
    }
    log = (workdir / "worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "accessdrift.streams.cli", "worker"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_ready(worker: subprocess.Popen[bytes], log: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and worker.poll() is None:
        if b"Worker]: Ready" in log.read_bytes():
            return True
        time.sleep(0.2)
    return False


def run_demo(out: TextIO, err: TextIO) -> int:
    """Run the live demo; returns the exit status (0 when it ran to the end or was stopped)."""
    topics = Topics()
    with (
        tempfile.TemporaryDirectory(prefix="accessdrift-demo-") as scratch,
        EmbeddedBroker() as broker,
    ):
        workdir = Path(scratch)
        err.write(f"demo: broker up at {broker.bootstrap} (memory only); starting a worker ...\n")
        worker = _start_worker(broker, workdir, topics)
        try:
            if not _wait_ready(worker, workdir / "worker.log", 90):
                err.write("demo: the worker did not start; its log:\n")
                err.write((workdir / "worker.log").read_text(errors="replace")[-3000:])
                return 1
            err.write(
                "demo: worker ready. Feeding the story; findings print as the worker publishes "
                "them (windows are seconds, grace 2 s). Ctrl-C stops.\n"
            )
            err.flush()
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            try:
                shown = loop.run_until_complete(_run(broker.bootstrap, topics, out, stop))
            finally:
                loop.close()
            err.write(f"demo: {shown} records shown; stopping the worker and the broker.\n")
        finally:
            stop_process_group(worker, timeout_s=20)
    return 0
