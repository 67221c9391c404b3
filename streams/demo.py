"""`accessdrift demo`: the live pipeline end to end on this machine, in about a minute and a half.

Starts the embedded broker, a worker, and the delivery service (`accessdrift notify`) with two
sinks: OCSF to a Splunk HEC endpoint and PagerDuty, both stand-ins the demo serves on loopback
(`streams/demo_receivers.py`). Feeds a scripted story of a small company's morning through Kafka
in real time (with a demo policy whose control windows are seconds), and prints every finding
and offboarding record as the worker publishes it, every event the SIEM receives and every page.
At the end it reads the time-to-revoke histogram from the worker's `/metrics`. The worker's
status page is up throughout, at a link carrying a token made for this run (and, at a terminal,
after the story until Enter). Ctrl-C stops everything; no process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from accessdrift.alerts.sinks import TextSink
from accessdrift.models.findings import Record, decode_record
from accessdrift.streams.broker import LOOPBACK, EmbeddedBroker, free_port, stop_process_group
from accessdrift.streams.demo_receivers import DemoReceivers
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
#: The demo policy's window per (trigger, privileged), for the time-to-revoke summary.
DEMO_WINDOWS_S: Final = {
    ("leaver", "true"): 10,
    ("leaver", "false"): 40,
    ("suspension", "true"): 10,
    ("suspension", "false"): 10,
    ("mover", "true"): 20,
    ("mover", "false"): 20,
    ("device_untrusted", "true"): 8,
    ("device_untrusted", "false"): 8,
    ("owner_departed", "false"): 45,
    ("joiner", "false"): 30,
}
NOTIFY_CONFIG: Final = """\
linger = "1s"
[retry]
initial_backoff = "0s"
max_backoff = "2s"

[[sink]]
name = "siem"
type = "splunk_hec"
url = "{url}"
token = {{ env = "DEMO_HEC_TOKEN" }}
format = "ocsf"

[[sink]]
name = "pager"
type = "pagerduty"
url = "{url}/v2/enqueue"
routing_key = {{ env = "DEMO_PAGERDUTY_KEY" }}
min_severity = "high"
"""

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


async def _run(
    bootstrap: str, topics: Topics, out: TextIO, stop: asyncio.Event, receivers: DemoReceivers
) -> int:
    started = time.monotonic()
    await receivers.start()
    try:
        watcher = asyncio.create_task(_watch(bootstrap, topics.findings, TextSink(out), stop))
        feeder = asyncio.create_task(_feed(bootstrap, topics, started, out))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=STORY_END_S)
        stop.set()
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        return await watcher
    finally:
        await receivers.stop()


def time_to_revoke_summary(metrics_text: str) -> list[str]:
    """One line per (trigger, privileged) the histogram has observed: how many obligations were
    met and how many within the demo policy's window (read from the window's bucket)."""
    counts: dict[tuple[str, str], float] = {}
    within: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "accessdrift_time_to_revoke_seconds":
            continue
        for sample in family.samples:
            key = (sample.labels.get("trigger", ""), sample.labels.get("privileged", ""))
            if sample.name.endswith("_count"):
                counts[key] = counts.get(key, 0) + sample.value
            window = DEMO_WINDOWS_S.get(key)
            bucket = sample.name.endswith("_bucket")
            if bucket and window is not None and float(sample.labels["le"]) == window:
                within[key] = within.get(key, 0) + sample.value
    lines = []
    for (trigger, privileged), count in sorted(counts.items()):
        if not count:
            continue
        kind = "privileged" if privileged == "true" else "ordinary"
        window = DEMO_WINDOWS_S.get((trigger, privileged))
        line = f"  {trigger:<21} {kind:<10} {int(count)} met"
        if window is not None:
            line += f", {int(within.get((trigger, privileged), 0))} within the {window} s window"
        lines.append(line)
    return lines


def _start_notify(
    broker: EmbeddedBroker, workdir: Path, topics: Topics, receivers: DemoReceivers, token: str
) -> subprocess.Popen[bytes]:
    config = workdir / "notify.toml"
    config.write_text(NOTIFY_CONFIG.format(url=receivers.url))
    env = {
        **os.environ,
        "DEMO_HEC_TOKEN": token,
        "DEMO_PAGERDUTY_KEY": secrets.token_hex(16),
        "ACCESSDRIFT_TOPIC_FINDINGS": topics.findings,
    }
    log = (workdir / "notify.log").open("wb")
    return subprocess.Popen(
        [
            sys.executable, "-m", "accessdrift.streams.cli", "notify",
            "--config", str(config), "--broker", broker.bootstrap,
            "--web-port", str(free_port()),
        ],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def _start_worker(
    broker: EmbeddedBroker, workdir: Path, topics: Topics, web_port: int, api_token: str
) -> subprocess.Popen[bytes]:
    policy = workdir / "demo-policy.toml"
    policy.write_text(DEMO_POLICY)
    env = {
        **os.environ,
        "ACCESSDRIFT_BROKER": broker.bootstrap,
        "ACCESSDRIFT_APP_ID": "accessdrift-demo",
        "ACCESSDRIFT_POLICY": str(policy),
        "ACCESSDRIFT_PARTITIONS": "4",
        "ACCESSDRIFT_WEB_PORT": str(web_port),
        "ACCESSDRIFT_GRACE_S": str(GRACE_S),
        "ACCESSDRIFT_SESSION_TIMEOUT_S": "6",
        "ACCESSDRIFT_ONE_RECORD_BATCHES": "true",
        "ACCESSDRIFT_DATA_DIR": str(workdir / "data"),
        "ACCESSDRIFT_TOPIC_FINDINGS": topics.findings,
        "ACCESSDRIFT_API_TOKEN": api_token,
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
        web_port = free_port()
        # A token for this run only, so the page can be opened from a link that carries it.
        api_token = secrets.token_urlsafe(18)
        worker = _start_worker(broker, workdir, topics, web_port, api_token)
        token = secrets.token_hex(16)
        receivers = DemoReceivers(out, token)
        notify = _start_notify(broker, workdir, topics, receivers, token)
        metrics_url = f"http://{LOOPBACK}:{web_port}/metrics"
        # The token travels in the fragment, which a browser never sends to the server.
        status_url = f"http://{LOOPBACK}:{web_port}/#token={api_token}"
        try:
            if not _wait_ready(worker, workdir / "worker.log", 90):
                err.write("demo: the worker did not start; its log:\n")
                err.write((workdir / "worker.log").read_text(errors="replace")[-3000:])
                return 1
            err.write(
                "demo: worker ready. Feeding the story; findings print as the worker publishes "
                "them (windows are seconds, grace 2 s). `accessdrift notify` delivers them as "
                f"OCSF to a stand-in Splunk HEC (SIEM lines) and pages a stand-in PagerDuty "
                f"(PAGE lines) at {receivers.url}. Time-to-revoke: "
                f"accessdrift_time_to_revoke_seconds at {metrics_url}. Ctrl-C stops.\n"
                f"demo: status page (this run's token in the link): {status_url}\n"
            )
            err.flush()
            loop = asyncio.new_event_loop()
            stop = asyncio.Event()
            interrupted: list[int] = []

            def interrupt(signum: int) -> None:
                interrupted.append(signum)
                stop.set()

            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, interrupt, signum)
            try:
                shown = loop.run_until_complete(
                    _run(broker.bootstrap, topics, out, stop, receivers)
                )
            finally:
                loop.close()
            err.write(
                f"demo: {shown} records shown, {receivers.siem_events} SIEM events, "
                f"{receivers.pages} pages.\n"
            )
            _show_time_to_revoke(metrics_url, out)
            if sys.stdin.isatty() and not interrupted:
                err.write(
                    f"demo: the story is over; the status page stays up at {status_url} until "
                    "you press Enter or Ctrl-C.\n"
                )
                err.flush()
                with contextlib.suppress(KeyboardInterrupt, EOFError):
                    sys.stdin.readline()
            err.write("demo: stopping the delivery service, the worker and the broker.\n")
        finally:
            stop_process_group(notify, timeout_s=20)
            stop_process_group(worker, timeout_s=20)
    return 0


def _show_time_to_revoke(metrics_url: str, out: TextIO) -> None:
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            text = response.read().decode()
    except OSError as error:
        out.write(f"time to revoke: {metrics_url} did not answer ({error})\n")
        return
    out.write(f"time to revoke, from accessdrift_time_to_revoke_seconds at {metrics_url}:\n")
    for line in time_to_revoke_summary(text) or ["  (no obligation was met yet)"]:
        out.write(line + "\n")
    out.flush()
