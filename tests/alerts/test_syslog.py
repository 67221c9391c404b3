"""CEF over syslog into Debian's rsyslog, started on loopback: RFC 5424 over TCP (octet
counting), UDP, and TLS (Debian's stunnel4 terminating TLS in front of rsyslog's TCP input)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accessdrift.alerts.delivery import FormattedSink
from accessdrift.alerts.formats import FORMATTERS
from accessdrift.alerts.transports import Syslog, SyslogProtocol, tls_context
from accessdrift.models.findings import Record
from accessdrift.streams.broker import free_port
from tests.alerts.records import EVIDENCE, FINDING, finding, resolved
from tests.alerts.test_formats import parse_cef
from tests.servers import need, port_open, running


@dataclass(frozen=True)
class Rsyslog:
    tcp_port: int
    udp_port: int
    tls_port: int
    ca_file: Path
    output: Path

    def lines(self) -> list[str]:
        if not self.output.exists():
            return []
        return self.output.read_text().splitlines()


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    home = tmp_path_factory.mktemp("rsyslog")
    tcp_port, udp_port, tls_port = free_port(), free_port(), free_port()
    output = home / "received.log"
    config = home / "rsyslog.conf"
    (home / "work").mkdir()
    config.write_text(
        f'global(workDirectory="{home / "work"}")\n'
        'module(load="imtcp")\nmodule(load="imudp")\n'
        f'input(type="imtcp" address="127.0.0.1" port="{tcp_port}" ruleset="feed")\n'
        f'input(type="imudp" address="127.0.0.1" port="{udp_port}" ruleset="feed")\n'
        'template(name="fields" type="string" '
        'string="%pri%|%timereported:::date-rfc3339%|%app-name%|%msgid%|%msg%\\n")\n'
        f'ruleset(name="feed") {{ action(type="omfile" file="{output}" template="fields") }}\n'
    )
    cert, key = home / "cert.pem", home / "key.pem"
    subprocess.run(
        [
            need("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    stunnel_config = home / "stunnel.conf"
    stunnel_config.write_text(
        f"foreground = yes\npid =\n[syslog-tls]\naccept = 127.0.0.1:{tls_port}\n"
        f"connect = 127.0.0.1:{tcp_port}\ncert = {cert}\nkey = {key}\n"
    )
    rsyslogd = [need("rsyslogd"), "-n", "-f", str(config), "-i", str(home / "rsyslogd.pid")]
    with (
        running(rsyslogd, port_open(tcp_port), home / "rsyslogd.log"),
        running([need("stunnel4"), str(stunnel_config)], port_open(tls_port), home / "stunnel.log"),
    ):
        yield Rsyslog(tcp_port, udp_port, tls_port, cert, output)


def _send(server: Rsyslog, protocol: SyslogProtocol, records: list[Record]) -> None:
    port = {"tcp": server.tcp_port, "udp": server.udp_port, "tls": server.tls_port}[protocol]
    transport = Syslog(
        "127.0.0.1",
        port,
        protocol,
        hostname="accessdrift-test",
        context=tls_context(server.ca_file, verify=True) if protocol == "tls" else None,
    )
    sink = FormattedSink(f"syslog-{protocol}", FORMATTERS["cef"], transport)

    async def go() -> None:
        try:
            await sink.deliver(records)
        finally:
            await sink.close()

    asyncio.run(go())


def _received(server: Rsyslog, marker: str, count: int) -> list[list[str]]:
    deadline = time.monotonic() + 15
    while True:
        lines = [line.split("|", 4) for line in server.lines() if marker in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


@pytest.mark.parametrize("protocol", ["tcp", "udp", "tls"])
def test_cef_reaches_rsyslog_one_record_per_message(
    rsyslog: Rsyslog, protocol: SyslogProtocol
) -> None:
    marker = f"{protocol}-feed"
    # A summary with a line break and CEF's special characters: still one message, one line.
    opened = finding(identity_id=marker, summary="held | still=yes\nsecond line \\ end")
    _send(rsyslog, protocol, [opened, resolved(opened), EVIDENCE])

    received = _received(rsyslog, marker, 2)
    assert len(received) == 2
    (pri_open, when, app, msgid, cef_open), (pri_resolved, _, _, _, cef_resolved) = received
    assert pri_open == str(10 * 8 + 2), "authpriv, critical"
    assert pri_resolved == str(10 * 8 + 6), "authpriv, informational: good news"
    assert when.startswith("2026-01-05T10:00:01")
    assert (app, msgid) == ("accessdrift", "finding")
    header, fields = parse_cef(cef_open)
    assert header[3] == "access_not_revoked:leaver"
    assert fields["externalId"] == FINDING.finding_id
    assert fields["duser"] == marker
    assert fields["msg"] == "held | still=yes\nsecond line \\ end"
    assert parse_cef(cef_resolved)[1]["act"] == "finding-resolved"
