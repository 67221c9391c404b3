"""Running real `accessdrift worker` processes in tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from accessdrift.streams.broker import EmbeddedBroker, free_port

ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))
#: The mark of a module whose tests drive several worker processes and a broker: `make test`
#: runs two xdist workers, and one group's tests run one after another on one of them, so these
#: never starve each other (`pytestmark = HEAVY`).
HEAVY = pytest.mark.xdist_group("processes")
STREAM_TOPICS = ("identity_status", "device_posture", "entitlement_change", "access_exception")


def worker_env(
    broker: EmbeddedBroker, run: str, policy: Path, grace_s: float, data_dir: Path
) -> dict[str, str]:
    """Settings for a worker of app `test-<run>` on topics of its own (`<run>.<stream>`)."""
    env = {
        **os.environ,
        "ACCESSDRIFT_BROKER": broker.bootstrap,
        "ACCESSDRIFT_APP_ID": f"test-{run}",
        "ACCESSDRIFT_POLICY": str(policy),
        "ACCESSDRIFT_PARTITIONS": "4",
        "ACCESSDRIFT_GRACE_S": str(grace_s),
        "ACCESSDRIFT_SESSION_TIMEOUT_S": "6",
        "ACCESSDRIFT_ONE_RECORD_BATCHES": "true",
        "ACCESSDRIFT_DATA_DIR": str(data_dir),
        "ACCESSDRIFT_TOPIC_FINDINGS": f"{run}.findings",
        "ACCESSDRIFT_TOPIC_DEADLETTER": f"{run}.deadletter",
    }
    for name in STREAM_TOPICS:
        env[f"ACCESSDRIFT_TOPIC_{name.upper()}"] = f"{run}.{name}"
    return env


class WorkerProcess:
    """One `accessdrift worker` process with its own web port and log file."""

    def __init__(self, env: dict[str, str], home: Path, name: str) -> None:
        self.log = home / f"{name}.log"
        self.web_port = free_port()
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [ACCESSDRIFT, "worker"],
                cwd=home,
                env={**env, "ACCESSDRIFT_WEB_PORT": str(self.web_port)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 60) -> None:
        wait_for(lambda: b"Worker]: Ready" in self.log.read_bytes(), timeout_s, self.log)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process.wait()

    def kill(self) -> None:
        """SIGKILL: no chance to flush or commit anything."""
        self.process.kill()
        self.process.wait()


def wait_for(condition: Callable[[], bool], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out; worker log:\n{log.read_text(errors='replace')[-3000:]}")
