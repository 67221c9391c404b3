"""Every Kafka client of accessdrift over TLS with a client certificate, against a real TLS
endpoint: Debian's stunnel4 terminating TLS in front of the embedded broker (which advertises
the TLS address), with a CA, server and client certificates this test makes.

`produce` sends a leaver's history, the worker reads it and publishes the finding, `notify`
delivers it to a stand-in HEC: all through TLS. A client that does not trust the broker's CA,
or has no client certificate, or speaks plain TCP, gets nothing through.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from accessdrift.models.findings import decode_record
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.alerts.standins import StandIn
from tests.kafka import create_topics, read_topic
from tests.servers import need, port_open, running
from tests.workers import ACCESSDRIFT, STREAM_TOPICS, WorkerProcess, wait_for, worker_env


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
        settings.update(overrides)
        return {name: value for name, value in settings.items() if value}

    def options(self) -> dict[str, Any]:
        return KafkaSecurity.from_env(self.env()).client_options()


def _openssl(*args: str) -> None:
    subprocess.run([need("openssl"), *args], check=True, capture_output=True)


def _certificates(home: Path) -> dict[str, Path]:
    """A CA, and a server (for 127.0.0.1) and a client certificate it signed."""
    paths = {name: home / f"{name}.pem" for name in ("ca", "ca-key", "server", "server-key")}
    paths.update({name: home / f"{name}.pem" for name in ("client", "client-key")})
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
        "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]),
    )  # fmt: skip
    for name, subject, extension in [
        ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
        ("client", "/CN=accessdrift-worker", "extendedKeyUsage=clientAuth"),
    ]:
        request = home / f"{name}.csr"
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", str(paths[f"{name}-key"]), "-out", str(request),
        )  # fmt: skip
        extfile = home / f"{name}.ext"
        extfile.write_text(extension + "\n")
        _openssl(
            "x509", "-req", "-in", str(request), "-CA", str(paths["ca"]),
            "-CAkey", str(paths["ca-key"]), "-CAcreateserial", "-days", "1",
            "-extfile", str(extfile), "-out", str(paths[name]),
        )  # fmt: skip
    return paths


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    home = tmp_path_factory.mktemp("kafka-tls")
    paths = _certificates(home)
    tls_port = free_port()
    config = home / "stunnel.conf"
    with EmbeddedBroker(advertised=f"127.0.0.1:{tls_port}") as plain:
        config.write_text(
            f"foreground = yes\npid =\n[kafka-tls]\naccept = 127.0.0.1:{tls_port}\n"
            f"connect = {plain.bootstrap}\ncert = {paths['server']}\n"
            f"key = {paths['server-key']}\nCAfile = {paths['ca']}\n"
            "requireCert = yes\nverifyChain = yes\n"
        )
        with running([need("stunnel4"), str(config)], port_open(tls_port), home / "stunnel.log"):
            yield TlsBroker(
                f"127.0.0.1:{tls_port}", paths["ca"], paths["client"], paths["client-key"], plain
            )


def _produce(tls: TlsBroker, lines: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCESSDRIFT, "produce", "--broker", tls.bootstrap, str(lines)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ACCESSDRIFT_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _history(path: Path, run: str) -> Path:
    def line(topic: str, **value: Any) -> str:
        return json.dumps({"topic": topic, "value": value})

    path.write_text(
        "\n".join([
            line("entitlement.change", event_id=f"{run}-g", occurred_at="2026-03-01T09:00:00Z",
                 identity_id="alice", system="aws", entitlement="prod-admin", action="granted",
                 privileged=True),
            line("identity.status", event_id=f"{run}-t", occurred_at="2026-03-02T09:00:00Z",
                 identity_id="alice", status="terminated"),
            # Moves the event clock past the leaver's one-hour window.
            line("identity.status", event_id=f"{run}-c", occurred_at="2026-03-02T12:00:00Z",
                 identity_id="clock", status="active"),
        ]) + "\n"
    )  # fmt: skip
    return path


def test_produce_worker_and_notify_work_over_tls_with_a_client_certificate(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    policy = tmp_path / "policy.toml"
    policy.write_text('[leaver]\nprivileged_window = "1h"\nwindow = "1h"\n')
    env = worker_env(tls_broker.plain, run, policy, 0, tmp_path / "data")
    env.update(tls_broker.env(), ACCESSDRIFT_BROKER=tls_broker.bootstrap, ACCESSDRIFT_CLOCK="event")
    topics = [env[f"ACCESSDRIFT_TOPIC_{name.upper()}"] for name in STREAM_TOPICS]
    create_topics(
        tls_broker.bootstrap, [*topics, env["ACCESSDRIFT_TOPIC_FINDINGS"]], **tls_broker.options()
    )
    sent = _produce(tls_broker, _history(tmp_path / "history.jsonl", run), env)
    assert sent.returncode == 0, sent.stderr
    assert "3 sent" in sent.stderr

    notify_config = tmp_path / "notify.toml"
    with StandIn() as hec:
        notify_config.write_text(
            f'group_prefix = "{run}"\nlinger = "0s"\n[[sink]]\nname = "splunk"\n'
            f'type = "splunk_hec"\nurl = "{hec.url}"\ntoken = {{ env = "HEC_TOKEN" }}\n'
        )
        worker = WorkerProcess(env, tmp_path, "worker")
        with (tmp_path / "notify.log").open("wb") as log:
            notify = subprocess.Popen(
                [ACCESSDRIFT, "notify", "--config", str(notify_config),
                 "--web-port", str(free_port())],
                env={**env, "HEC_TOKEN": "hec-token-1"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_for(lambda: len(hec.seen) >= 1, 90, worker.log)
        finally:
            notify.terminate()
            notify.wait(30)
            worker.stop()
    raw = read_topic(tls_broker.bootstrap, env["ACCESSDRIFT_TOPIC_FINDINGS"], 1, 10,
                     **tls_broker.options())  # fmt: skip
    (record,) = [decode_record(value) for _, _, value, _ in raw]
    assert (record.identity_id, record.trigger, record.status) == ("alice", "leaver", "open")
    (delivered,) = hec.seen[0].json_lines()
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
    create_topics(tls_broker.bootstrap, [topic], **tls_broker.options())
    refused = _produce(
        tls_broker,
        _history(tmp_path / "history.jsonl", run),
        {**tls_broker.env(**REFUSED[why]), "ACCESSDRIFT_TOPIC_IDENTITY_STATUS": topic},
    )
    assert refused.returncode == 3, (why, refused.stderr)
    if why == "does not trust the broker's CA":
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    assert f"cannot reach Kafka at {tls_broker.bootstrap}" in refused.stderr
    assert read_topic(tls_broker.bootstrap, topic, 1, 3, **tls_broker.options()) == [], why
