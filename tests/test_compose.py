"""docker-compose.yml cannot run here (no Docker engine), so it is checked as data: it parses,
it runs Kafka in KRaft mode, and what it tells the worker matches what the worker reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from accessdrift.models.policy import Policy, load_policy

ROOT = Path(__file__).parents[1]
ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def worker_variables() -> set[str]:
    help_text = subprocess.run(
        [ACCESSDRIFT, "worker", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"\[(ACCESSDRIFT_[A-Z_]+)\]", help_text))


def test_kafka_runs_in_kraft_mode_published_on_loopback_only() -> None:
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]

    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert kafka["ports"] == ["127.0.0.1:9092:9092"]


def test_the_worker_gets_only_settings_it_reads_and_reaches_kafka_internally() -> None:
    services = compose()["services"]
    worker = services["worker"]
    env = worker["environment"]
    known = worker_variables() | {
        f"ACCESSDRIFT_TOPIC_{name.upper()}"
        for name in (
            "identity_status",
            "device_posture",
            "entitlement_change",
            "access_exception",
            "findings",
            "deadletter",
        )
    }

    assert set(services) == {"kafka", "worker"}
    assert set(env) <= known, set(env) - known
    assert {"ACCESSDRIFT_BROKER", "ACCESSDRIFT_POLICY", "ACCESSDRIFT_STORE"} <= set(env)
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"INTERNAL://{env['ACCESSDRIFT_BROKER']}" in advertised.split(",")
    assert env["ACCESSDRIFT_STORE"] in {"memory", "rocksdb"}
    assert worker["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_the_files_the_worker_mounts_and_builds_from_exist_and_are_valid() -> None:
    worker = compose()["services"]["worker"]
    policy_mount = next(v for v in worker["volumes"] if v.startswith("./"))
    source, target, _ = policy_mount.split(":")

    assert target == worker["environment"]["ACCESSDRIFT_POLICY"]
    assert load_policy(ROOT / source) == Policy()
    assert (ROOT / worker["build"]["dockerfile"]).is_file()
