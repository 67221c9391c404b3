"""The compose stack cannot run here (no Docker engine), so it is checked as data and with the
real tools that can: docker-compose.yml parses, runs Kafka in KRaft mode, publishes on loopback
only and tells each accessdrift service only settings it reads; every file it mounts exists and
loads with the loader the service uses; Debian's promtool checks the Prometheus config and runs
the alerting rules' unit tests; Grafana's provisioning names the datasource and folder the
dashboard uses. The dashboard's and the rules' expressions against live processes are in
tests/test_dashboard.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from accessdrift.alerts.settings import load_notify_settings
from accessdrift.models.policy import Policy, load_policy
from accessdrift.streams.signals.settings import load_ingest_settings
from tests.servers import need

ROOT = Path(__file__).parents[1]
STACK = ROOT / "stack"
ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))
TOPIC_VARIABLES = {
    f"ACCESSDRIFT_TOPIC_{name.upper()}"
    for name in ("identity_status", "device_posture", "entitlement_change", "access_exception",
                 "findings", "deadletter")
}  # fmt: skip
#: The Kafka security settings every client reads (README: Security).
KAFKA_VARIABLES_PREFIX = "ACCESSDRIFT_KAFKA_"
ACCESSDRIFT_SERVICES = ("worker", "notify", "ingest", "simulator")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def variables_of(command: str) -> set[str]:
    """The ACCESSDRIFT_ variables an accessdrift command reads, from its --help."""
    help_text = subprocess.run(
        [ACCESSDRIFT, command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"\[?(ACCESSDRIFT_[A-Z_]+)\]?", help_text)) | TOPIC_VARIABLES


def mounted(service: dict[str, Any], target: str) -> Path:
    """The repository file or folder a service mounts at `target`."""
    for volume in service.get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target and source.startswith("./"):
            return ROOT / source
    raise AssertionError(f"nothing from the repository is mounted at {target}")


def test_the_stack_has_every_service_and_kafka_runs_in_kraft_mode() -> None:
    stack = services()
    kafka = stack["kafka"]
    env = kafka["environment"]

    assert set(stack) == {"kafka", "worker", "notify", "ingest", "simulator", "prometheus",
                          "grafana"}  # fmt: skip
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert stack["simulator"]["profiles"] == ["demo"], "demo traffic can be left out"


def test_every_port_is_published_on_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_each_accessdrift_service_gets_only_settings_its_command_reads() -> None:
    stack = services()
    advertised = stack["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    for name in ACCESSDRIFT_SERVICES:
        service = stack[name]
        # The simulator's shell line ends in `accessdrift produce`, which reads the settings.
        command = "produce" if name == "simulator" else service["command"][0]
        env = service["environment"]
        ours = {key for key in env if key.startswith("ACCESSDRIFT_")}
        assert ours <= variables_of(command), (name, ours - variables_of(command))
        assert f"INTERNAL://{env['ACCESSDRIFT_BROKER']}" in advertised, name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert (ROOT / service["build"]["dockerfile"]).is_file()
    produce = stack["simulator"]["command"][0]
    assert "accessdrift simulate" in produce
    assert "accessdrift produce" in produce


def test_secrets_come_from_the_environment_with_no_default() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for name in ("ACCESSDRIFT_API_TOKEN", "GRAFANA_ADMIN_PASSWORD", "MDM_WEBHOOK_SECRET",
                 "HR_WEBHOOK_SECRET"):  # fmt: skip
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", text), (
            f"{name} must be required, not defaulted"
        )
    assert services()["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_the_worker_policy_and_its_web_port_are_what_prometheus_scrapes() -> None:
    stack = services()
    worker = stack["worker"]
    env = worker["environment"]
    assert load_policy(mounted(worker, env["ACCESSDRIFT_POLICY"])) == Policy()
    assert env["ACCESSDRIFT_STORE"] in {"memory", "rocksdb"}

    config = yaml.safe_load((STACK / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    ingest = load_ingest_settings_with_secrets(stack["ingest"])
    notify_port = stack["notify"]["environment"]["ACCESSDRIFT_NOTIFY_WEB_PORT"]
    assert targets == {
        "accessdrift-worker": [f"worker:{env['ACCESSDRIFT_WEB_PORT']}"],
        "accessdrift-notify": [f"notify:{notify_port}"],
        "accessdrift-ingest": [f"ingest:{ingest.listen.port}"],
    }
    # Inside a container the web servers listen on every address, for Prometheus; the host
    # sees them on loopback only (the port test above).
    assert env["ACCESSDRIFT_WEB_HOST"] == "0.0.0.0"
    assert stack["notify"]["environment"]["ACCESSDRIFT_NOTIFY_WEB_HOST"] == "0.0.0.0"
    assert ingest.listen.host == "0.0.0.0"
    assert worker["ports"] == [f"127.0.0.1:{env['ACCESSDRIFT_WEB_PORT']}:6066"]


def load_ingest_settings_with_secrets(service: dict[str, Any]) -> Any:
    """stack/ingest.toml loaded as the service would, with the secrets compose passes it."""
    path = mounted(service, service["environment"]["ACCESSDRIFT_INGEST_CONFIG"])
    secrets = {name for name in service["environment"] if not name.startswith("ACCESSDRIFT_")}
    referenced = set(re.findall(r'env = "([A-Z_]+)"', path.read_text()))
    assert referenced == secrets, "every secret the settings name, and only those, is passed"
    with pytest.MonkeyPatch.context() as patch:
        for name in secrets:
            patch.setenv(name, "whsec_" + "c2VjcmV0LWZvci10aGUtdGVzdC0xMjM0NTY3ODkwYWI=")
        return load_ingest_settings(path)


def test_the_notify_and_ingest_settings_load() -> None:
    stack = services()
    notify = stack["notify"]
    settings = load_notify_settings(
        mounted(notify, notify["environment"]["ACCESSDRIFT_NOTIFY_CONFIG"])
    )
    assert [sink.type for sink in settings.sink] == ["kafka"]
    ingest = load_ingest_settings_with_secrets(stack["ingest"])
    assert {webhook.stream for webhook in ingest.webhooks} == {"device.posture", "identity.status"}


def test_promtool_checks_the_prometheus_config_and_runs_the_rules_unit_tests() -> None:
    promtool = need("promtool")
    folder = STACK / "prometheus"
    prometheus = services()["prometheus"]
    assert mounted(prometheus, "/etc/prometheus") == folder
    for command in (["check", "config", "prometheus.yml"], ["test", "rules", "rules.test.yml"]):
        result = subprocess.run(
            [promtool, *command], cwd=folder, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_severity_a_summary_and_a_runbook_section() -> None:
    rules = yaml.safe_load((STACK / "prometheus" / "rules.yml").read_text())
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", operations, re.MULTILINE)
    }
    tested = (STACK / "prometheus" / "rules.test.yml").read_text()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert len(alerts) >= 8
    for rule in alerts:
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: docs/operations.md has no section {anchor}"
    untested = {rule["alert"] for rule in alerts} - set(re.findall(r"alertname: (\w+)", tested))
    # These four are a threshold on one series each; their expressions are checked live
    # (tests/test_dashboard.py).
    simple = {"AccessdriftClockLagHigh", "AccessdriftEventLagHigh", "AccessdriftSinkRefusing",
              "AccessdriftIngestRejecting"}  # fmt: skip
    assert untested <= simple, untested


def test_grafana_provisions_the_datasource_and_the_dashboard_the_panels_use() -> None:
    grafana = services()["grafana"]
    provisioning = mounted(grafana, "/etc/grafana/provisioning")
    dashboards_folder = mounted(grafana, "/var/lib/grafana/dashboards")
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "accessdrift.yml").read_text())[
        "providers"
    ]
    dashboard = json.loads((dashboards_folder / "accessdrift.json").read_text())
    prometheus_port = services()["prometheus"]["ports"][0].rsplit(":", 1)[1]

    assert datasource["type"] == "prometheus"
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert dashboard["uid"] == "accessdrift-overview"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/var/lib/grafana/dashboards/accessdrift.json"
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
