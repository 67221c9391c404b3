"""What the benchmarks that run real workers on the embedded broker share: topics, the worker's
settings and process, its metrics, and the JSON every benchmark ends with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

#: Partitions of every topic a benchmark creates, and of the workers' tables.
PARTITIONS = 8


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1) for name in set(names)])
    finally:
        await admin.close()


def worker_env(
    bootstrap: str,
    app_id: str,
    policy: Path,
    data_dir: Path,
    web_port: int,
    topics: dict[str, str],
    **settings: str,
) -> dict[str, str]:
    """A worker's environment: `topics` by contract stream name (`identity.status`, …,
    `findings`, `deadletter`), `settings` as further `ACCESSDRIFT_*` variables (`GRACE_S="1"`)."""
    return {
        **os.environ,
        "ACCESSDRIFT_BROKER": bootstrap,
        "ACCESSDRIFT_APP_ID": app_id,
        "ACCESSDRIFT_POLICY": str(policy),
        "ACCESSDRIFT_PARTITIONS": str(PARTITIONS),
        "ACCESSDRIFT_SESSION_TIMEOUT_S": "6",
        "ACCESSDRIFT_DATA_DIR": str(data_dir),
        "ACCESSDRIFT_WEB_PORT": str(web_port),
        **{f"ACCESSDRIFT_TOPIC_{k.replace('.', '_').upper()}": v for k, v in topics.items()},
        **{f"ACCESSDRIFT_{name}": value for name, value in settings.items()},
    }


def start_worker(env: dict[str, str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    """An `accessdrift worker` process in its own session (stop it with `stop_process_group`),
    its output in `log`."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "accessdrift.streams.cli", "worker"],
            env=env, stdout=output, stderr=subprocess.STDOUT, cwd=home, start_new_session=True,
        )  # fmt: skip


def metrics_text(url: str) -> str:
    """A worker's Prometheus text, or "" while it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def emit(results: dict[str, Any], path: Path | None) -> None:
    """The benchmark's results as JSON on standard output, and in `path` when given."""
    text = json.dumps(results, indent=2, sort_keys=True)
    print(text)
    if path:
        path.write_text(text + "\n")
