"""The Grafana dashboard's and the alerting rules' expressions against live processes: every
metric they name is one that a running worker, delivery service or ingest receiver exports (read
from their /metrics), and Debian's Prometheus, scraping those three processes under the stack's
job names, evaluates every expression without error and answers the gauges with data."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from accessdrift.streams.broker import free_port
from tests.servers import http_ok, need, running
from tests.streams.api_scenario import Scenario
from tests.test_stack import ACCESSDRIFT, STACK

pytestmark = pytest.mark.xdist_group("dashboard")
METRIC = re.compile(r"\b(accessdrift_[a-z0-9_]+|up)\b")
#: What Grafana puts in for its variables before it sends a query.
GRAFANA_VARIABLES = {"$__range": "1h", "$__rate_interval": "1m", "$__interval": "15s"}
WHSEC = "whsec_c2VjcmV0LWZvci10aGUtdGVzdC0xMjM0NTY3ODkwYWI="


def dashboard_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads((STACK / "grafana" / "dashboards" / "accessdrift.json").read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((STACK / "prometheus" / "rules.yml").read_text())
    return [(rule["alert"], rule["expr"]) for group in rules["groups"] for rule in group["rules"]]


def exported(url: str) -> set[str]:
    """Every sample name a /metrics page can carry (histogram and counter suffixes included)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    names = set()
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        # client_python names a counter's family with its `_total` in this format.
        name = family.removesuffix("_total") if kind == "counter" else family
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"),
        }.get(kind, ("",))
        names |= {name + suffix for suffix in suffixes}
    return names


def _logged(log: Path, text: str) -> Callable[[], bool]:
    return lambda: log.exists() and text.encode() in log.read_bytes()


@pytest.fixture(scope="module")
def targets(
    scenario: Scenario, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """job name → host:port of the worker, a delivery service and an ingest receiver, run with
    the stack's own notify and ingest settings (on loopback and free ports)."""
    home = tmp_path_factory.mktemp("dashboard")
    env = scenario.worker.env
    notify_port, ingest_port = free_port(), free_port()
    ingest = (STACK / "ingest.toml").read_text()
    ingest = ingest.replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
    ingest = ingest.replace("port = 8470", f"port = {ingest_port}")
    (home / "ingest.toml").write_text(ingest)
    bootstrap = scenario.worker.broker.bootstrap
    notify = [ACCESSDRIFT, "notify", "--config", str(STACK / "notify.toml"),
              "--broker", bootstrap, "--web-port", str(notify_port)]  # fmt: skip
    secrets = {"MDM_WEBHOOK_SECRET": WHSEC, "HR_WEBHOOK_SECRET": WHSEC}
    notify_log, ingest_log = home / "notify.log", home / "ingest.log"
    with (
        running(notify, _logged(notify_log, "metrics at http://"), notify_log, 60, env),
        running(
            [ACCESSDRIFT, "ingest", "--config", str(home / "ingest.toml")],
            _logged(ingest_log, "accessdrift ingest listening"),
            ingest_log,
            60,
            {**env, **secrets},
        ),
    ):
        yield {
            "accessdrift-worker": scenario.url.removeprefix("http://"),
            "accessdrift-notify": f"127.0.0.1:{notify_port}",
            "accessdrift-ingest": f"127.0.0.1:{ingest_port}",
        }


def test_every_metric_the_dashboard_and_rules_name_is_exported(targets: dict[str, str]) -> None:
    names = {"up"}
    for address in targets.values():
        names |= exported(f"http://{address}/metrics")
    for where, expression in dashboard_expressions() + rule_expressions():
        unknown = set(METRIC.findall(expression)) - names
        assert not unknown, f"{where}: {sorted(unknown)} are not exported"


def _query(prometheus: str, expression: str) -> dict[str, Any]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            result: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as error:
        result = json.loads(error.read())
    return result


def test_prometheus_evaluates_every_expression_of_the_dashboard_and_rules(
    targets: dict[str, str], tmp_path: Path
) -> None:
    stack_config = yaml.safe_load((STACK / "prometheus" / "prometheus.yml").read_text())
    jobs = [job["job_name"] for job in stack_config["scrape_configs"]]
    assert sorted(jobs) == sorted(targets)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(STACK / "prometheus" / "rules.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [targets[job]]}]} for job in jobs
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    prometheus = f"http://127.0.0.1:{port}"
    command = [
        need("prometheus"),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(command, http_ok(f"{prometheus}/-/ready"), tmp_path / "prometheus.log"):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            up = _query(prometheus, "sum(up)")["data"]["result"]
            if up and float(up[0]["value"][1]) == len(jobs):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"Prometheus did not scrape all of {jobs}")
        time.sleep(3)  # a few samples, so that rate() and increase() have two to compare

        for where, written in dashboard_expressions() + rule_expressions():
            expression = written
            for variable, value in GRAFANA_VARIABLES.items():
                expression = expression.replace(variable, value)
            answer = _query(prometheus, expression)
            assert answer["status"] == "success", (where, expression, answer)

        # The scenario left one leaver's seat open: the gauges the top of the dashboard shows.
        def value(expression: str) -> float:
            (sample,) = _query(prometheus, expression)["data"]["result"]
            return float(sample["value"][1])

        assert value("sum(accessdrift_findings_open) or vector(0)") >= 1
        assert value("max(accessdrift_oldest_overdue_obligation_age_seconds)") > 0
        rules = _query(prometheus, "ALERTS")  # rules load and evaluate on this data
        assert rules["status"] == "success"
        with urllib.request.urlopen(f"{prometheus}/api/v1/rules", timeout=10) as response:
            groups = json.load(response)["data"]["groups"]
        health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        assert set(health.values()) <= {"ok", "unknown"}, health
