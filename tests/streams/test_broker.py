"""The embedded broker and `accessdrift broker`, `accessdrift produce` against it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from accessdrift.models.errors import BrokerError
from accessdrift.streams.broker import EmbeddedBroker, free_port, wait_for_port
from tests.kafka import read_topic

ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))
DEMO = Path(__file__).parents[2] / "deploy" / "demo" / "events.jsonl"


def test_the_broker_listens_on_loopback_and_stops_without_leftovers() -> None:
    broker = EmbeddedBroker()
    broker.start()
    try:
        assert broker.host == "127.0.0.1"
        assert wait_for_port("127.0.0.1", broker.port, 1.0)
    finally:
        broker.stop()

    assert not broker.running
    assert not wait_for_port("127.0.0.1", broker.port, 0.3)


def test_a_taken_port_is_a_clear_retryable_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        try:
            with pytest.raises(BrokerError) as caught:
                broker.start(timeout_s=5)
        finally:
            broker.stop()

    assert caught.value.retryable
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert not broker.running


def test_the_broker_command_runs_until_interrupted() -> None:
    port = free_port()
    process = subprocess.Popen(
        [ACCESSDRIFT, "broker", "--port", str(port)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        ready = process.stderr.readline()
        assert f"broker ready at 127.0.0.1:{port}" in ready
        assert "memory only" in ready
        assert wait_for_port("127.0.0.1", port, 2.0)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()
    assert not wait_for_port("127.0.0.1", port, 0.3)


def test_produce_sends_each_event_to_its_topic_keyed_by_identity_or_device(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    env = {"ACCESSDRIFT_TOPIC_DEVICE_POSTURE": "test-produce.devices"}
    lines = DEMO.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"topic":"identity.status","value":{"event_id":"x"}}\n')

    result = subprocess.run(
        [ACCESSDRIFT, "produce", "--broker", broker.bootstrap, str(DEMO), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )

    assert result.returncode == 1, result.stderr
    assert f"{bad}:1: value.occurred_at: required field is missing" in result.stderr
    assert f"produce: {len(lines) + 1} lines read, {len(lines)} sent, 1 rejected" in result.stderr
    devices = [json.loads(line)["value"] for line in lines if '"device.posture"' in line]
    records = read_topic(broker.bootstrap, "test-produce.devices", len(devices))
    assert sorted(json.loads(value)["event_id"] for _, _, value, _ in records) == sorted(
        device["event_id"] for device in devices
    )
    partitions_of: dict[bytes | None, set[int]] = {}
    for partition, key, value, _ in records:
        assert key == json.loads(value)["device_id"].encode()
        partitions_of.setdefault(key, set()).add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of.values())


def test_produce_says_when_kafka_is_unreachable() -> None:
    result = subprocess.run(
        [ACCESSDRIFT, "produce", "--broker", f"127.0.0.1:{free_port()}", str(DEMO)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 3
    assert "cannot reach Kafka at 127.0.0.1:" in result.stderr
    assert "start one with `accessdrift broker`" in result.stderr


def test_the_broker_dies_with_the_process_that_started_it() -> None:
    port = free_port()
    script = (
        "import sys, time; from accessdrift.streams.broker import EmbeddedBroker; "
        f"EmbeddedBroker(port={port}).start(); print('up', flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().strip() == "up"
        assert wait_for_port("127.0.0.1", port, 1.0)
        parent.kill()
        parent.wait()
        assert not _still_listening(port, within_s=5.0)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def _still_listening(port: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not wait_for_port("127.0.0.1", port, 0.1):
            return False
        time.sleep(0.1)
    return True


def test_produce_paces_to_the_rate_asked_for(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A feed played in real time: no faster than the rate (a lower bound, which a slow machine
    only makes longer)."""
    history = tmp_path / "history.jsonl"
    subprocess.run(
        [ACCESSDRIFT, "simulate", "--identities", "5", "--out", str(history)],
        capture_output=True, check=True,
    )  # fmt: skip
    count = len(history.read_text().splitlines())
    rate = count / 1.5
    env = {**os.environ, "ACCESSDRIFT_TOPIC_IDENTITY_STATUS": "test-rate.status"}

    started = time.monotonic()
    result = subprocess.run(
        [ACCESSDRIFT, "produce", "--broker", broker.bootstrap, "--rate", f"{rate:.3f}",
         str(history)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1.5 * (count - 1) / count
    assert f"{count} sent" in result.stderr
    refused = subprocess.run(
        [ACCESSDRIFT, "produce", "--broker", broker.bootstrap, "--rate", "0", str(history)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "--rate must be" in refused.stderr
