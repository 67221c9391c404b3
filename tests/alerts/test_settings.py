"""The delivery service's settings file: validation errors name the file and field; secrets come
from the environment or files and are never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from accessdrift.alerts.delivery import FormattedSink
from accessdrift.alerts.paging import Alertmanager, PagerDuty
from accessdrift.alerts.settings import (
    NotifySettingsError,
    build_sinks,
    load_notify_settings,
)
from accessdrift.alerts.transports import KafkaTopic, SplunkHec, Syslog, Webhook
from accessdrift.models.kafka import KafkaSecurity

COMPLETE = """
group_prefix = "soc"
linger = "2s"

[retry]
initial_backoff = "1s"
max_backoff = "2m"

[[sink]]
name = "splunk"
type = "splunk_hec"
url = "https://splunk.example.com:8088"
token = { env = "HEC_TOKEN" }
format = "ocsf"
ack = true
index = "security"

[[sink]]
name = "siem-syslog"
type = "syslog"
host = "siem.example.com"
port = 6514
protocol = "tls"
format = "cef"

[[sink]]
name = "connector"
type = "kafka"
topic = "soc.findings.ecs"
format = "ecs"

[[sink]]
name = "soar"
type = "webhook"
url = "https://soar.example.com/hooks/accessdrift"
secret = { file = "SECRET_FILE" }

[[sink]]
name = "oncall"
type = "pagerduty"
routing_key = { env = "PD_KEY" }
min_severity = "critical"

[[sink]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093"
username = "accessdrift"
password = { env = "AM_PASSWORD" }
resend_interval = "30s"
"""

ENV = {"HEC_TOKEN": "hec-secret", "PD_KEY": "pd-secret", "AM_PASSWORD": "am-secret"}


def _write(tmp_path: Path, text: str, name: str = "notify.toml") -> Path:
    path = tmp_path / name
    secret = tmp_path / "webhook-secret"
    secret.write_text("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n")
    path.write_text(text.replace("SECRET_FILE", str(secret)))
    return path


def test_a_complete_file_builds_every_sink_with_its_secrets(tmp_path: Path) -> None:
    path = _write(tmp_path, COMPLETE)
    settings = load_notify_settings(path)
    sinks = build_sinks(settings, path, "127.0.0.1:9092", KafkaSecurity(), ENV)

    assert [s.name for s in sinks] == ["splunk", "siem-syslog", "connector", "soar", "oncall", "am"]
    kinds = [type(s.transport) if isinstance(s, FormattedSink) else type(s) for s in sinks]
    assert kinds == [SplunkHec, Syslog, KafkaTopic, Webhook, PagerDuty, Alertmanager]
    assert settings.backoff.max_s == 120
    assert settings.linger == 2
    assert settings.group_prefix == "soc"


def test_secrets_are_not_in_the_settings_repr(tmp_path: Path) -> None:
    path = _write(tmp_path, COMPLETE)
    sinks = build_sinks(load_notify_settings(path), path, "b:9092", KafkaSecurity(), ENV)

    shown = repr([vars(s) for s in sinks]) + repr([vars(getattr(s, "transport", s)) for s in sinks])
    for secret in ENV.values():
        assert secret not in shown


def test_the_same_settings_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "notify.yaml"
    path.write_text(
        "sink:\n  - name: oncall\n    type: pagerduty\n    routing_key: {env: PD_KEY}\n"
    )

    (sink,) = build_sinks(load_notify_settings(path), path, "b:9092", KafkaSecurity(), ENV)
    assert isinstance(sink, PagerDuty)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("[[sink]]\nname='x'\ntype='carrier_pigeon'\n", "sink[0]", "does not match any"),
        (
            "[[sink]]\nname='x'\ntype='syslog'\nhost='h'\nport=0\n",
            "sink[0].syslog.port",
            "greater than or equal to 1",
        ),
        (
            "[[sink]]\nname='x'\ntype='splunk_hec'\nurl='ftp://x'\ntoken={env='T'}\n",
            "sink[0].splunk_hec.url",
            "pattern",
        ),
        (
            "[[sink]]\nname='x'\ntype='webhook'\nurl='https://x'\nsecret='plain-text'\n",
            "sink[0].webhook.secret",
            "valid dictionary",
        ),
        (
            "[[sink]]\nname='x'\ntype='webhook'\nurl='https://x'\nsecret={env='A', file='b'}\n",
            "sink[0].webhook.secret",
            "exactly one of env",
        ),
        (
            "[[sink]]\nname='x'\ntype='pagerduty'\nrouting_key={env='K'}\nmin_severity='dire'\n",
            "sink[0].pagerduty.min_severity",
            "'critical'",
        ),
        (
            "[[sink]]\nname='x'\ntype='kafka'\ntopic='t'\n[[sink]]\nname='x'\ntype='kafka'\n"
            "topic='u'\n",
            "",
            "two sinks are named 'x'",
        ),
        ("[[sink]]\nname='x'\ntype='kafka'\ntopic='t'\ncolour='red'\n", "colour", "unknown"),
        ("sink = []\n", "sink", "at least 1"),
    ],
)
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(NotifySettingsError) as caught:
        load_notify_settings(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert field in caught.value.field
    assert reason in caught.value.reason


def test_a_missing_secret_names_the_field_and_the_variable_not_a_value(tmp_path: Path) -> None:
    path = _write(tmp_path, COMPLETE)
    settings = load_notify_settings(path)

    with pytest.raises(NotifySettingsError) as caught:
        build_sinks(settings, path, "b:9092", KafkaSecurity(), {**ENV, "PD_KEY": ""})
    assert caught.value.field == "sink[4].routing_key"
    assert "PD_KEY is not set or empty" in str(caught.value)

    (tmp_path / "webhook-secret").unlink()
    with pytest.raises(NotifySettingsError, match=r"sink\[3\]\.secret: cannot read"):
        build_sinks(settings, path, "b:9092", KafkaSecurity(), ENV)
