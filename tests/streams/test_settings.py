"""Topic names: defaults, `ACCESSDRIFT_TOPIC_*` variables, and `--topic NAME=TOPIC` overrides."""

from __future__ import annotations

import pytest

from accessdrift.streams.settings import Topics, broker_from_env


def test_defaults_are_the_stream_names_and_the_output_topics() -> None:
    topics = Topics.from_env({})

    assert topics.for_stream("identity.status") == "identity.status"
    assert (topics.findings, topics.deadletter) == (
        "accessdrift.findings",
        "accessdrift.deadletter",
    )


def test_variables_then_flags_override_the_defaults() -> None:
    topics = Topics.from_env(
        {"ACCESSDRIFT_TOPIC_IDENTITY_STATUS": "hr.people", "ACCESSDRIFT_TOPIC_FINDINGS": "soc.a"}
    ).with_overrides(["findings=soc.b", "device.posture=mdm.devices"])

    assert topics.for_stream("identity.status") == "hr.people"
    assert topics.for_stream("device.posture") == "mdm.devices"
    assert topics.findings == "soc.b"


@pytest.mark.parametrize("pair", ["identity.state=x", "findings", "findings=", "=x"])
def test_a_bad_override_names_what_is_allowed(pair: str) -> None:
    with pytest.raises(ValueError, match=r"write NAME=TOPIC with NAME one of identity\.status"):
        Topics().with_overrides([pair])


def test_the_broker_comes_from_the_environment_or_the_local_default() -> None:
    assert broker_from_env({}) == "127.0.0.1:9092"
    assert broker_from_env({"ACCESSDRIFT_BROKER": "kafka:29092"}) == "kafka:29092"
