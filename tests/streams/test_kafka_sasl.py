"""Every Kafka client of accessdrift with SASL, against a broker that authenticates: the
stand-in SASL front (`tests/sasl.py`, a real SCRAM and PLAIN server side) in front of the
embedded broker, which cannot serve SASL itself; for SASL_SSL, Debian's stunnel4 terminates TLS
in front of the SASL front, as a broker's SASL_SSL listener would.

`produce`, the worker and `notify` carry a leaver's finding through with SCRAM-SHA-512 over TLS;
`produce` gets through with SCRAM-SHA-256 and PLAIN over TLS and, when allowed, with SCRAM over
plain TCP. A wrong password, an unknown user and a mechanism the broker does not offer get
nothing through and say why; no password appears in any output.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.kafka import create_topics, read_topic
from tests.kafka_security import (
    certificates,
    client_env,
    leaver_goes_through,
    leaver_history,
    options,
    produce,
    tls_endpoint,
)
from tests.sasl import Exchange, SaslFront

USER, PASSWORD = "accessdrift-worker", "correct horse battery staple"


@dataclass(frozen=True)
class SaslBroker:
    bootstrap: str
    protocol: str
    ca: Path | None
    front: SaslFront
    plain: EmbeddedBroker

    def env(self, mechanism: str, **overrides: str) -> dict[str, str]:
        """ACCESSDRIFT_KAFKA_* for a client with the right credentials, unless overridden."""
        settings = {
            "ACCESSDRIFT_KAFKA_SECURITY_PROTOCOL": self.protocol,
            "ACCESSDRIFT_KAFKA_CA_FILE": str(self.ca or ""),
            "ACCESSDRIFT_KAFKA_SASL_MECHANISM": mechanism,
            "ACCESSDRIFT_KAFKA_SASL_USERNAME": USER,
            "ACCESSDRIFT_KAFKA_SASL_PASSWORD": PASSWORD,
        }
        if self.protocol == "SASL_PLAINTEXT":
            settings["ACCESSDRIFT_KAFKA_ALLOW_UNENCRYPTED_SASL"] = "true"
        return client_env(settings, overrides)


@pytest.fixture(scope="module")
def sasl_ssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    home = tmp_path_factory.mktemp("kafka-sasl-ssl")
    paths = certificates(home)
    tls_port = free_port()
    with (
        EmbeddedBroker(advertised=f"127.0.0.1:{tls_port}") as plain,
        SaslFront(plain.bootstrap, {USER: PASSWORD}) as front,
        tls_endpoint(home, tls_port, front.address, paths, client_cert=False),
    ):
        yield SaslBroker(f"127.0.0.1:{tls_port}", "SASL_SSL", paths["ca"], front, plain)


@pytest.fixture(scope="module")
def sasl_plaintext() -> Iterator[SaslBroker]:
    port = free_port()
    with (
        EmbeddedBroker(advertised=f"127.0.0.1:{port}") as plain,
        SaslFront(plain.bootstrap, {USER: PASSWORD}, ("SCRAM-SHA-256",), port=port) as front,
    ):
        yield SaslBroker(front.address, "SASL_PLAINTEXT", None, front, plain)


def _no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text


def test_produce_worker_and_notify_work_over_sasl_ssl_with_scram_sha_512(
    sasl_ssl: SaslBroker, tmp_path: Path
) -> None:
    sasl_ssl.front.exchanges.clear()
    env = sasl_ssl.env("SCRAM-SHA-512")
    record, delivered, logs = leaver_goes_through(sasl_ssl.bootstrap, env, sasl_ssl.plain, tmp_path)
    assert (record.identity_id, record.trigger, record.status) == ("alice", "leaver", "open")
    assert delivered["fields"]["record_id"] == f"{record.finding_id}.open"
    exchanges = set(sasl_ssl.front.exchanges)
    assert exchanges == {Exchange("SCRAM-SHA-512", USER, "authenticated")}, "every connection"
    _no_password(*(log.read_text() for log in logs))
    for log in logs:  # aiokafka's own line: the client checked the server's signature too
        assert f"Authenticated as {USER} via SCRAM-SHA-512" in log.read_text(), log.name


def _produce_three(broker: SaslBroker, env: dict[str, str], tmp_path: Path) -> str:
    """`produce` with `env`; its stderr. Asserts the three events landed or nothing did."""
    run = uuid.uuid4().hex[:8]
    topic = f"{run}.identity_status"
    good = options(broker.env("SCRAM-SHA-256"))
    create_topics(broker.bootstrap, [topic], **good)
    result = produce(
        broker.bootstrap,
        leaver_history(tmp_path / "history.jsonl", run),
        {**env, "ACCESSDRIFT_TOPIC_IDENTITY_STATUS": topic},
    )
    landed = read_topic(broker.bootstrap, topic, 1, 2 if result.returncode else 10, **good)
    if result.returncode == 0:
        assert len(landed) == 2, result.stderr  # the two identity.status lines
    else:
        assert landed == [], result.stderr
    _no_password(result.stdout, result.stderr)
    return result.stderr if result.returncode else ""


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_produce_authenticates_over_sasl_ssl(
    sasl_ssl: SaslBroker, tmp_path: Path, mechanism: str
) -> None:
    sasl_ssl.front.exchanges.clear()
    assert _produce_three(sasl_ssl, sasl_ssl.env(mechanism), tmp_path) == ""
    assert Exchange(mechanism, USER, "authenticated") in sasl_ssl.front.exchanges


def test_scram_over_plain_tcp_works_when_allowed(
    sasl_plaintext: SaslBroker, tmp_path: Path
) -> None:
    sasl_plaintext.front.exchanges.clear()
    assert _produce_three(sasl_plaintext, sasl_plaintext.env("SCRAM-SHA-256"), tmp_path) == ""
    assert Exchange("SCRAM-SHA-256", USER, "authenticated") in sasl_plaintext.front.exchanges


REFUSED = {
    "a wrong password": ({"ACCESSDRIFT_KAFKA_SASL_PASSWORD": "guess"}, "SaslAuthenticationFailed"),
    "an unknown user": ({"ACCESSDRIFT_KAFKA_SASL_USERNAME": "mallory"}, "SaslAuthenticationFailed"),
}


@pytest.mark.parametrize("why", list(REFUSED))
def test_a_client_with_the_wrong_credentials_gets_nothing_through_and_is_told(
    sasl_ssl: SaslBroker, tmp_path: Path, why: str
) -> None:
    overrides, reason = REFUSED[why]
    sasl_ssl.front.exchanges.clear()
    stderr = _produce_three(sasl_ssl, sasl_ssl.env("SCRAM-SHA-512", **overrides), tmp_path)
    assert f"cannot reach Kafka at {sasl_ssl.bootstrap}" in stderr
    assert reason in stderr, stderr
    assert "check ACCESSDRIFT_KAFKA_SASL_USERNAME" in stderr
    refused = [e for e in sasl_ssl.front.exchanges if e.outcome == "refused"]
    assert refused
    assert all(e.mechanism == "SCRAM-SHA-512" for e in refused)
    assert "guess" not in stderr


def test_a_mechanism_the_broker_does_not_offer_is_refused_and_named(
    sasl_plaintext: SaslBroker, tmp_path: Path
) -> None:
    stderr = _produce_three(sasl_plaintext, sasl_plaintext.env("SCRAM-SHA-512"), tmp_path)
    assert "UnsupportedSaslMechanism" in stderr, stderr
    assert "that the broker offers ACCESSDRIFT_KAFKA_SASL_MECHANISM" in stderr
