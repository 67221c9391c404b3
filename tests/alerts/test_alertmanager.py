"""Paging through Debian's Prometheus Alertmanager, started on loopback: its own API shows the
alert firing while accessdrift re-sends it, then resolved."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from accessdrift.alerts.paging import Alertmanager
from accessdrift.streams.broker import free_port
from tests.alerts.records import FINDING, finding, resolved
from tests.servers import http_ok, need, running

#: Alertmanager forgets an alert not re-sent within this; accessdrift re-sends every second.
RESOLVE_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("alertmanager")
    config = home / "alertmanager.yml"
    config.write_text(
        f"global:\n  resolve_timeout: {RESOLVE_TIMEOUT_S}s\n"
        "route:\n  receiver: nobody\n  group_wait: 0s\n"
        "receivers:\n  - name: nobody\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        need("prometheus-alertmanager"),
        f"--config.file={config}",
        f"--storage.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with running(command, http_ok(f"{url}/-/ready"), home / "alertmanager.log"):
        yield url


def _alerts(url: str, finding_id: str) -> list[dict[str, Any]]:
    query = f"{url}/api/v2/alerts?filter=finding_id%3D%22{finding_id}%22"
    with urllib.request.urlopen(query, timeout=5) as response:
        alerts: list[dict[str, Any]] = json.load(response)
    return alerts


def _wait_for(check: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_an_open_finding_fires_while_it_is_re_sent_and_resolves_with_ends_at(
    alertmanager: str,
) -> None:
    async def go() -> None:
        sink = Alertmanager("am", alertmanager, labels={"team": "iam"})
        try:
            await sink.deliver([FINDING])
            (alert,) = _alerts(alertmanager, FINDING.finding_id)
            assert alert["status"]["state"] == "active"
            assert alert["labels"] == {
                "alertname": "AccessDriftFinding",
                "team": "iam",
                "finding_id": FINDING.finding_id,
                "kind": "access_not_revoked",
                "trigger": "leaver",
                "severity": "critical",
                "identity_kind": "human",
            }
            assert alert["annotations"]["identity_id"] == "alice"
            assert alert["annotations"]["summary"] == FINDING.summary
            # Well past Alertmanager's resolve timeout, kept alive by re-sending.
            for _ in range(RESOLVE_TIMEOUT_S * 2):
                await asyncio.sleep(1)
                await sink.resend()
            (alert,) = _alerts(alertmanager, FINDING.finding_id)
            assert alert["status"]["state"] == "active"

            await sink.deliver([resolved(FINDING)])
            assert sink.open == {}
        finally:
            await sink.close()

    asyncio.run(go())
    _wait_for(lambda: _alerts(alertmanager, FINDING.finding_id) == [])


def test_an_alert_nobody_re_sends_is_dropped_by_alertmanager(alertmanager: str) -> None:
    """The reason for re-sending: the control experiment for the test above."""
    other = FINDING.finding_id[::-1]

    async def go() -> None:
        sink = Alertmanager("am", alertmanager)
        try:
            await sink.deliver([finding(finding_id=other)])
        finally:
            await sink.close()

    asyncio.run(go())
    assert len(_alerts(alertmanager, other)) == 1
    _wait_for(lambda: _alerts(alertmanager, other) == [], RESOLVE_TIMEOUT_S * 4)


def test_remembered_records_are_what_is_re_sent_after_a_restart() -> None:
    sink = Alertmanager("am", "http://127.0.0.1:1")

    sink.remember(FINDING)
    assert list(sink.open) == [FINDING.finding_id]
    sink.remember(resolved(FINDING))
    assert sink.open == {}
