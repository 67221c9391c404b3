"""Settings shared by the Kafka-facing commands, from flags and `ACCESSDRIFT_` environment
variables (a flag wins over the environment, the environment over the default)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from accessdrift.models.events import (
    ACCESS_EXCEPTION,
    DEVICE_POSTURE,
    ENTITLEMENT_CHANGE,
    IDENTITY_STATUS,
)

DEFAULT_BROKER = "127.0.0.1:9092"
ENV_PREFIX = "ACCESSDRIFT_"

TopicName = str
#: What `--topic NAME=TOPIC` can name: the four input streams and the two outputs.
TOPIC_NAMES = (
    IDENTITY_STATUS,
    DEVICE_POSTURE,
    ENTITLEMENT_CHANGE,
    ACCESS_EXCEPTION,
    "findings",
    "deadletter",
)


class Topics(BaseModel):
    """Kafka topic names for the four input streams and the outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    identity_status: TopicName = Field(default=IDENTITY_STATUS, min_length=1)
    device_posture: TopicName = Field(default=DEVICE_POSTURE, min_length=1)
    entitlement_change: TopicName = Field(default=ENTITLEMENT_CHANGE, min_length=1)
    access_exception: TopicName = Field(default=ACCESS_EXCEPTION, min_length=1)
    findings: TopicName = Field(default="accessdrift.findings", min_length=1)
    deadletter: TopicName = Field(default="accessdrift.deadletter", min_length=1)

    def for_stream(self, stream: str) -> str:
        """The topic carrying a contract stream (`identity.status` → its configured topic)."""
        topic: str = getattr(self, stream.replace(".", "_"))
        return topic

    def with_overrides(self, pairs: list[str]) -> Topics:
        """These names with `NAME=TOPIC` overrides applied (`identity.status=hr.people`,
        `findings=soc.access-findings`). Raises ValueError naming a bad pair."""
        updates: dict[str, str] = {}
        for pair in pairs:
            name, sep, topic = pair.partition("=")
            if not sep or name.strip() not in TOPIC_NAMES or not topic.strip():
                raise ValueError(
                    f"invalid --topic {pair!r}: write NAME=TOPIC with NAME one of "
                    f"{', '.join(TOPIC_NAMES)}"
                )
            updates[name.strip().replace(".", "_")] = topic.strip()
        return self.model_copy(update=updates)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Topics:
        """Topic names from `ACCESSDRIFT_TOPIC_<NAME>` variables, defaults for the rest."""
        environ = os.environ if environ is None else environ
        overrides = {
            name: environ[f"{ENV_PREFIX}TOPIC_{name.upper()}"]
            for name in cls.model_fields
            if f"{ENV_PREFIX}TOPIC_{name.upper()}" in environ
        }
        return cls(**overrides)


def broker_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The Kafka bootstrap address from `ACCESSDRIFT_BROKER`, or the local default."""
    environ = os.environ if environ is None else environ
    return environ.get(f"{ENV_PREFIX}BROKER", DEFAULT_BROKER)
