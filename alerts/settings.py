"""The delivery service's settings file: one `[[sink]]` table per destination.

Validated by pydantic; an error names the file and the field (`notify.toml: sink[1].url: ...`).
Secrets are never written in the file itself: a secret field names an environment variable
(`token = { env = "SPLUNK_HEC_TOKEN" }`) or a file (`token = { file = "/run/secrets/hec" }`),
read when the service starts, and kept as `SecretStr` (never shown by a repr, a log or an
error).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from accessdrift.alerts.delivery import Backoff, FormattedSink, Sink
from accessdrift.alerts.formats import FORMATTERS, FormatName
from accessdrift.alerts.paging import PAGERDUTY_URL, Alertmanager, PagerDuty
from accessdrift.alerts.transports import (
    KafkaTopic,
    SplunkHec,
    Syslog,
    SyslogFacility,
    SyslogProtocol,
    Webhook,
    tls_context,
)
from accessdrift.models.config import SecretRef, load_config
from accessdrift.models.errors import ConfigError
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.models.policy import Seconds
from accessdrift.models.vocabulary import Severity


class NotifySettingsError(ConfigError):
    """The delivery service's settings cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SinkName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Url = Annotated[str, Field(pattern=r"^https?://[^\s]+$", max_length=2048)]


class _Sink(_Strict):
    #: The sink's name: in metrics (`sink` label), logs, and its consumer group.
    name: SinkName


class _Tls(_Strict):
    #: A CA bundle to trust instead of the system's (a private CA).
    ca_file: Path | None = None
    #: False only for development against a self-signed receiver.
    verify_tls: bool = True


class SplunkHecSink(_Sink, _Tls):
    type: Literal["splunk_hec"]
    url: Url
    token: SecretRef
    format: FormatName = "json"
    index: str | None = None
    sourcetype: str | None = None
    ack: bool = False
    batch: int = Field(default=100, ge=1, le=10_000)


class SyslogSink(_Sink, _Tls):
    type: Literal["syslog"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    protocol: SyslogProtocol = "tcp"
    format: FormatName = "cef"
    facility: SyslogFacility = "authpriv"
    app_name: str = "accessdrift"


class KafkaSink(_Sink):
    type: Literal["kafka"]
    topic: str = Field(min_length=1)
    format: FormatName = "ocsf"
    #: Another cluster's bootstrap address; by default the one the findings come from.
    broker: str | None = None


class WebhookSink(_Sink, _Tls):
    type: Literal["webhook"]
    url: Url
    secret: SecretRef
    format: FormatName = "json"


class PagerDutySink(_Sink):
    type: Literal["pagerduty"]
    routing_key: SecretRef
    url: Url = PAGERDUTY_URL
    min_severity: Severity = "high"
    #: More findings than this opening in one batch become one grouped page.
    group_above: int = Field(default=5, ge=1)
    rate_per_minute: int = Field(default=120, ge=1, le=10_000)


class AlertmanagerSink(_Sink):
    type: Literal["alertmanager"]
    url: Url
    username: str | None = None
    password: SecretRef | None = None
    resend_interval: Seconds = Field(default=60, ge=1)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _both_or_neither(self) -> AlertmanagerSink:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        return self


AnySink = Annotated[
    SplunkHecSink | SyslogSink | KafkaSink | WebhookSink | PagerDutySink | AlertmanagerSink,
    Field(discriminator="type"),
]


class RetrySettings(_Strict):
    initial_backoff: Seconds = Field(default=1, ge=0)
    max_backoff: Seconds = Field(default=60, ge=1)


class NotifySettings(_Strict):
    sink: list[AnySink] = Field(min_length=1)
    retry: RetrySettings = RetrySettings()
    #: Each sink's consumer group is `<group_prefix>.<sink name>`.
    group_prefix: str = Field(default="accessdrift-notify", min_length=1)
    #: How long to wait for more records before delivering a batch that is not full.
    linger: Seconds = Field(default=1, ge=0, le=60)

    @model_validator(mode="after")
    def _unique_names(self) -> NotifySettings:
        seen: set[str] = set()
        for sink in self.sink:
            if sink.name in seen:
                raise ValueError(f"two sinks are named {sink.name!r}; names must be unique")
            seen.add(sink.name)
        return self

    @property
    def backoff(self) -> Backoff:
        return Backoff(float(self.retry.initial_backoff), float(self.retry.max_backoff))


def load_notify_settings(path: str | Path) -> NotifySettings:
    """Read and validate a settings file. Raises NotifySettingsError naming file and field."""
    return load_config(path, NotifySettings, NotifySettingsError, "[[sink]] tables")


def build_sinks(
    settings: NotifySettings,
    path: str | Path,
    broker: str,
    security: KafkaSecurity,
    environ: Mapping[str, str] | None = None,
) -> list[Sink]:
    """The configured sinks, with their secrets read. Raises NotifySettingsError naming the field
    of a secret that cannot be read."""
    environ = os.environ if environ is None else environ

    def secret(index: int, field: str, ref: SecretRef) -> SecretStr:
        try:
            return ref.read(environ)
        except ValueError as error:
            raise NotifySettingsError(str(path), f"sink[{index}].{field}", str(error)) from None

    sinks: list[Sink] = []
    for index, spec in enumerate(settings.sink):
        match spec:
            case SplunkHecSink():
                transport = SplunkHec(
                    spec.url,
                    secret(index, "token", spec.token),
                    index=spec.index,
                    sourcetype=spec.sourcetype,
                    ack=spec.ack,
                    batch=spec.batch,
                    context=tls_context(spec.ca_file, spec.verify_tls),
                )
                sinks.append(FormattedSink(spec.name, FORMATTERS[spec.format], transport))
            case SyslogSink():
                syslog = Syslog(
                    spec.host,
                    spec.port,
                    spec.protocol,
                    facility=spec.facility,
                    app_name=spec.app_name,
                    context=tls_context(spec.ca_file, spec.verify_tls),
                )
                sinks.append(FormattedSink(spec.name, FORMATTERS[spec.format], syslog))
            case KafkaSink():
                # The same ACCESSDRIFT_KAFKA_* settings as the cluster the findings come from.
                kafka = KafkaTopic(spec.broker or broker, security, spec.topic)
                sinks.append(FormattedSink(spec.name, FORMATTERS[spec.format], kafka))
            case WebhookSink():
                webhook = Webhook(
                    spec.url,
                    secret(index, "secret", spec.secret),
                    context=tls_context(spec.ca_file, spec.verify_tls),
                )
                sinks.append(FormattedSink(spec.name, FORMATTERS[spec.format], webhook))
            case PagerDutySink():
                sinks.append(
                    PagerDuty(
                        spec.name,
                        secret(index, "routing_key", spec.routing_key),
                        url=spec.url,
                        min_severity=spec.min_severity,
                        group_above=spec.group_above,
                        rate_per_minute=spec.rate_per_minute,
                    )
                )
            case AlertmanagerSink():
                password = None
                if spec.password is not None:
                    password = secret(index, "password", spec.password)
                sinks.append(
                    Alertmanager(
                        spec.name,
                        spec.url,
                        username=spec.username,
                        password=password,
                        resend_interval_s=float(spec.resend_interval),
                        labels=spec.labels,
                    )
                )
    return sinks
