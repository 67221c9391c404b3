"""What the TLS and SASL tests share: certificates this test run makes, a TLS endpoint
(Debian's stunnel4) in front of a broker, and a leaver's history taken through `produce`, the
worker and `notify` with a client's `ACCESSDRIFT_KAFKA_*` settings."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from accessdrift.models.findings import FindingRecord, decode_record
from accessdrift.models.kafka import KafkaSecurity
from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.alerts.standins import StandIn
from tests.kafka import create_topics, read_topic
from tests.servers import need, port_open, running
from tests.workers import ACCESSDRIFT, STREAM_TOPICS, WorkerProcess, wait_for, worker_env


def _openssl(*args: str) -> None:
    subprocess.run([need("openssl"), *args], check=True, capture_output=True)


def certificates(home: Path) -> dict[str, Path]:
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


@contextlib.contextmanager
def tls_endpoint(
    home: Path, port: int, connect: str, paths: dict[str, Path], client_cert: bool
) -> Iterator[None]:
    """stunnel4 on 127.0.0.1:`port`, terminating TLS for `connect` (host:port); with
    `client_cert`, a client must show a certificate the CA signed."""
    config = home / f"stunnel-{port}.conf"
    verify = "requireCert = yes\nverifyChain = yes\n" if client_cert else "requireCert = no\n"
    config.write_text(
        f"foreground = yes\npid =\n[kafka-tls]\naccept = 127.0.0.1:{port}\n"
        f"connect = {connect}\ncert = {paths['server']}\n"
        f"key = {paths['server-key']}\nCAfile = {paths['ca']}\n" + verify
    )
    with running([need("stunnel4"), str(config)], port_open(port), home / f"stunnel-{port}.log"):
        yield


def client_env(settings: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """`settings` with `overrides` applied; a variable overridden with "" is left out."""
    merged = {**settings, **overrides}
    return {name: value for name, value in merged.items() if value}


def options(env: dict[str, str]) -> dict[str, Any]:
    """aiokafka's keyword arguments for the client `env` (ACCESSDRIFT_KAFKA_*) describes."""
    return KafkaSecurity.from_env(env).client_options()


def produce(bootstrap: str, lines: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCESSDRIFT, "produce", "--broker", bootstrap, str(lines)],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ACCESSDRIFT_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def leaver_history(path: Path, run: str) -> Path:
    """A privileged grant, its holder's termination, and an event that moves the clock past
    the leaver's one-hour window: one leaver finding."""

    def line(topic: str, **value: Any) -> str:
        return json.dumps({"topic": topic, "value": value})

    path.write_text(
        "\n".join([
            line("entitlement.change", event_id=f"{run}-g", occurred_at="2026-03-01T09:00:00Z",
                 identity_id="alice", system="aws", entitlement="prod-admin", action="granted",
                 privileged=True),
            line("identity.status", event_id=f"{run}-t", occurred_at="2026-03-02T09:00:00Z",
                 identity_id="alice", status="terminated"),
            line("identity.status", event_id=f"{run}-c", occurred_at="2026-03-02T12:00:00Z",
                 identity_id="clock", status="active"),
        ]) + "\n"
    )  # fmt: skip
    return path


def leaver_goes_through(
    bootstrap: str, security: dict[str, str], plain: EmbeddedBroker, home: Path
) -> tuple[FindingRecord, dict[str, Any], list[Path]]:
    """`produce` sends a leaver's history to `bootstrap`, the worker reads it and publishes the
    finding, `notify` delivers it to a stand-in HEC, every client with the settings `security`.
    The finding as read back, the HEC event, and the logs of the worker and `notify`."""
    run = uuid.uuid4().hex[:8]
    policy = home / "policy.toml"
    policy.write_text('[leaver]\nprivileged_window = "1h"\nwindow = "1h"\n')
    env = worker_env(plain, run, policy, 0, home / "data")
    env.update(security, ACCESSDRIFT_BROKER=bootstrap, ACCESSDRIFT_CLOCK="event")
    topics = [env[f"ACCESSDRIFT_TOPIC_{name.upper()}"] for name in STREAM_TOPICS]
    create_topics(bootstrap, [*topics, env["ACCESSDRIFT_TOPIC_FINDINGS"]], **options(security))
    sent = produce(bootstrap, leaver_history(home / "history.jsonl", run), env)
    assert sent.returncode == 0, sent.stderr
    assert "3 sent" in sent.stderr

    notify_config = home / "notify.toml"
    notify_log = home / "notify.log"
    with StandIn() as hec:
        notify_config.write_text(
            f'group_prefix = "{run}"\nlinger = "0s"\n[[sink]]\nname = "splunk"\n'
            f'type = "splunk_hec"\nurl = "{hec.url}"\ntoken = {{ env = "HEC_TOKEN" }}\n'
        )
        worker = WorkerProcess(env, home, "worker")
        with notify_log.open("wb") as log:
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
    raw = read_topic(bootstrap, env["ACCESSDRIFT_TOPIC_FINDINGS"], 1, 10, **options(security))
    (record,) = [decode_record(value) for _, _, value, _ in raw]
    assert isinstance(record, FindingRecord)
    (delivered,) = hec.seen[0].json_lines()
    return record, delivered, [worker.log, notify_log]
