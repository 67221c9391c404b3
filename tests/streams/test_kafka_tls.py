"""Every Kafka client of accessdrift over TLS with a client certificate, against a real TLS
endpoint: Debian's stunnel4 terminating TLS in front of the embedded broker (which advertises
the TLS address), with a CA, server and client certificates this test makes.

`produce` sends a leaver's history, the worker reads it and publishes the finding, `notify`
delivers it to a stand-in HEC: all through TLS. A client that does not trust the broker's CA,
or has no client certificate, or speaks plain TCP, gets nothing through.
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


@dataclass(frozen=True)
class TlsBroker:
    bootstrap: str
    ca: Path
    client_cert: Path
    client_key: Path
    plain: EmbeddedBroker

    def env(self, **overrides: str) -> dict[str, str]:
        """ACCESSDRIFT_KAFKA_* for a client with the CA and the client certificate."""
        settings = {
            "ACCESSDRIFT_KAFKA_SECURITY_PROTOCOL": "SSL",
            "ACCESSDRIFT_KAFKA_CA_FILE": str(self.ca),
            "ACCESSDRIFT_KAFKA_CERT_FILE": str(self.client_cert),
            "ACCESSDRIFT_KAFKA_KEY_FILE": str(self.client_key),
        }
        return client_env(settings, overrides)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    home = tmp_path_factory.mktemp("kafka-tls")
    paths = certificates(home)
    tls_port = free_port()
    with (
        EmbeddedBroker(advertised=f"127.0.0.1:{tls_port}") as plain,
        tls_endpoint(home, tls_port, plain.bootstrap, paths, client_cert=True),
    ):
        yield TlsBroker(
            f"127.0.0.1:{tls_port}", paths["ca"], paths["client"], paths["client-key"], plain
        )


def test_produce_worker_and_notify_work_over_tls_with_a_client_certificate(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    record, delivered, _ = leaver_goes_through(
        tls_broker.bootstrap, tls_broker.env(), tls_broker.plain, tmp_path
    )
    assert (record.identity_id, record.trigger, record.status) == ("alice", "leaver", "open")
    assert delivered["fields"]["record_id"] == f"{record.finding_id}.open"


NO_CLIENT_CERT = {"ACCESSDRIFT_KAFKA_CERT_FILE": "", "ACCESSDRIFT_KAFKA_KEY_FILE": ""}
REFUSED = {
    "does not trust the broker's CA": {"ACCESSDRIFT_KAFKA_CA_FILE": ""},
    "no client certificate": NO_CLIENT_CERT,
    "plain TCP": {
        "ACCESSDRIFT_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "ACCESSDRIFT_KAFKA_CA_FILE": "",
        **NO_CLIENT_CERT,
    },
}


@pytest.mark.parametrize("why", list(REFUSED))
def test_a_client_the_tls_endpoint_should_not_let_in_gets_nothing_through(
    tls_broker: TlsBroker, tmp_path: Path, why: str
) -> None:
    run = uuid.uuid4().hex[:8]
    topic = f"{run}.identity_status"
    create_topics(tls_broker.bootstrap, [topic], **options(tls_broker.env()))
    refused = produce(
        tls_broker.bootstrap,
        leaver_history(tmp_path / "history.jsonl", run),
        {**tls_broker.env(**REFUSED[why]), "ACCESSDRIFT_TOPIC_IDENTITY_STATUS": topic},
    )
    assert refused.returncode == 3, (why, refused.stderr)
    if why == "does not trust the broker's CA":
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert f"cannot reach Kafka at {tls_broker.bootstrap}" in refused.stderr
    assert read_topic(tls_broker.bootstrap, topic, 1, 3, **options(tls_broker.env())) == [], why
