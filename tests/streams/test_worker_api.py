"""The worker's web server after a live scenario: the access-picture API behind its token, and
Debian's Prometheus scraping `/metrics` and answering PromQL about time-to-revoke."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from accessdrift.streams.broker import free_port
from accessdrift.streams.guard import BURST, RATE_PER_S
from tests.servers import http_ok, need, running
from tests.streams.api_scenario import TOKEN, Scenario
from tests.workers import WorkerProcess


def _get(url: str, token: str | None = TOKEN) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response), dict(response.headers)
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body), dict(error.headers)
        except ValueError:
            return error.code, {"text": body.decode(errors="replace")}, dict(error.headers)


def test_without_a_valid_token_the_api_answers_401_and_no_data(scenario: Scenario) -> None:
    for path in (f"/identities/{scenario.alice}", "/findings?status=open"):
        for token in (None, "wrong", TOKEN + "x", ""):
            status, body, headers = _get(scenario.url + path, token)
            assert status == 401, (path, token)
            assert set(body) == {"error"}
            assert scenario.alice not in json.dumps(body)
            assert headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = _get(scenario.url + f"/identities/{scenario.alice}", None)
    assert status == 401


def test_faust_pages_that_would_show_table_data_are_off(scenario: Scenario) -> None:
    for path in ("/table/", "/table/identities/", "/router/", "/graph/"):
        status, _, _ = _get(scenario.url + path, None)
        assert status == 404, path


def test_health_readiness_and_metrics_need_no_token(scenario: Scenario) -> None:
    assert _get(scenario.url + "/healthz", None)[:2] == (200, {"status": "ok"})
    assert _get(scenario.url + "/readyz", None)[:2] == (200, {"status": "ready"})
    with urllib.request.urlopen(scenario.url + "/metrics", timeout=10) as response:
        assert b"accessdrift_time_to_revoke_seconds_bucket" in response.read()


def test_the_access_picture_of_a_leaver_with_access_left(scenario: Scenario) -> None:
    status, picture, _ = _get(scenario.url + f"/identities/{scenario.bob}")

    assert status == 200
    assert picture["identity_id"] == scenario.bob
    assert picture["status"] == "terminated"
    assert [(e["system"], e["entitlement"]) for e in picture["entitlements"]] == [("jira", "seat")]
    (obligation,) = picture["obligations"]
    assert obligation["trigger"] == "leaver"
    assert obligation["state"] == "open"
    assert (obligation["system"], obligation["entitlement"]) == ("jira", "seat")
    assert obligation["deadline"] > obligation["triggered_at"]
    assert picture["exceptions"] == []


def test_the_access_picture_of_a_completed_offboarding(scenario: Scenario) -> None:
    status, picture, _ = _get(scenario.url + f"/identities/{scenario.alice}")

    assert status == 200
    assert picture["entitlements"] == []
    assert picture["obligations"] == []
    (device,) = picture["devices"]
    assert device["device_id"] == f"mac-{scenario.alice}"
    assert device["posture"] == "compliant"
    assert device["trusted"] is True


def test_an_unknown_identity_is_404(scenario: Scenario) -> None:
    status, body, _ = _get(scenario.url + "/identities/nobody-at-all")
    assert status == 404
    assert "no event has named" in body["error"]


def test_open_findings(scenario: Scenario) -> None:
    status, body, _ = _get(scenario.url + "/findings?status=open")
    mine = [f for f in body["findings"] if f["identity_id"] in (scenario.alice, scenario.bob)]

    assert status == 200
    assert [(f["identity_id"], f["system"], f["status"]) for f in mine] == [
        (scenario.bob, "jira", "open")
    ]
    assert body["truncated"] is False
    assert _get(scenario.url + "/findings?status=resolved")[0] == 400
    assert _get(scenario.url + "/findings?limit=0")[0] == 400


def test_the_token_is_never_logged(scenario: Scenario) -> None:
    assert TOKEN not in scenario.log.read_text(errors="replace")


def _promql(prometheus: str, query: str) -> dict[str, float]:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}


def test_prometheus_scrapes_the_share_revoked_within_the_window(
    scenario: Scenario, tmp_path: Path
) -> None:
    port = free_port()
    prometheus = f"http://127.0.0.1:{port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: accessdrift\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{scenario.url.rsplit(':', 1)[1]}']\n"
    )
    command = [
        need("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]

    # The share of leaver revocations within the window, as a dashboard would ask it: the
    # window's bucket over the count (3 s for privileged access, 6 s for the rest).
    def share(privileged: str, window: str) -> str:
        selector = f'trigger="leaver",privileged="{privileged}"'
        return (
            f'sum(accessdrift_time_to_revoke_seconds_bucket{{{selector},le="{window}"}})'
            f" / sum(accessdrift_time_to_revoke_seconds_count{{{selector}}})"
        )

    with running(command, http_ok(f"{prometheus}/-/ready"), tmp_path / "prometheus.log"):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _promql(prometheus, share("true", "3.0")):
            time.sleep(0.5)
        assert _promql(prometheus, share("true", "3.0")) == {"{}": 0.5}, "1 of 2 in time"
        assert _promql(prometheus, share("false", "6.0")) == {"{}": 0.0}, "alice's seat: 8 s"
        assert _promql(prometheus, share("false", "+Inf")) == {"{}": 1.0}


def test_any_worker_of_the_group_answers_for_any_identity(
    scenario: Scenario, tmp_path: Path
) -> None:
    """A second worker joins; each identity's picture is answered by whichever worker is asked,
    the one that does not own its partition forwarding to the one that does."""
    second = WorkerProcess(scenario.worker.env, tmp_path, "second")
    try:
        second.wait_ready()
        other = f"http://127.0.0.1:{second.web_port}"
        deadline = time.monotonic() + 60
        answers: dict[tuple[str, str], int] = {}
        while time.monotonic() < deadline:
            answers = {
                (url, who): _get(f"{url}/identities/{who}")[0]
                for url in (scenario.url, other)
                for who in (scenario.alice, scenario.bob)
            }
            if set(answers.values()) == {200}:
                break
            time.sleep(1)
        assert set(answers.values()) == {200}, answers
        for who in (scenario.alice, scenario.bob):
            assert (
                _get(f"{scenario.url}/identities/{who}")[1] == _get(f"{other}/identities/{who}")[1]
            )
        assert _get(f"{other}/identities/{scenario.bob}", "wrong")[0] == 401
    finally:
        second.stop()


def test_a_token_in_the_query_string_is_refused_even_beside_a_valid_header(
    scenario: Scenario,
) -> None:
    for path in (f"/identities/{scenario.alice}?token={TOKEN}", f"/metrics?access_token={TOKEN}"):
        status, body, _ = _get(scenario.url + path, TOKEN)
        assert status == 400, path
        assert TOKEN not in json.dumps(body)
        assert "Authorization: Bearer" in body["error"]
    assert TOKEN not in scenario.log.read_text()


def test_a_request_with_a_body_is_refused(scenario: Scenario) -> None:
    request = urllib.request.Request(
        scenario.url + "/findings", data=b"{}" * 10_000, method="GET",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    refused.value.close()
    assert refused.value.code == 413


def test_a_flood_of_requests_gets_429_then_is_served_again(scenario: Scenario) -> None:
    statuses = [_get(scenario.url + "/healthz", None)[0] for _ in range(60)]
    assert statuses[0] == 200
    assert 429 in statuses
    status, _, headers = _get(scenario.url + "/healthz", None)
    assert status == 429
    time.sleep(float(headers["Retry-After"]) + BURST / RATE_PER_S)  # the bucket refills
    assert _get(scenario.url + "/healthz", None)[0] == 200


def test_time_to_revoke_per_trigger_with_the_share_within_the_window(scenario: Scenario) -> None:
    status, body, _ = _get(scenario.url + "/time-to-revoke")
    assert status == 200
    leaver = {t["privileged"]: t for t in body["triggers"] if t["trigger"] == "leaver"}

    # Privileged: alice's admin role after 1 s (window 3 s), bob's after 5 s.
    assert (leaver[True]["on_time"], leaver[True]["late"]) == (1, 1)
    assert leaver[True]["within_window"] == 0.5
    # Ordinary: alice's chat seat after 8 s (window 6 s); bob's tracker seat is still open.
    assert (leaver[False]["on_time"], leaver[False]["late"]) == (0, 1)
    assert leaver[False]["within_window"] == 0.0
    assert leaver[True]["buckets"][-1] == [None, 2], "+Inf is null and counts both"
    assert 1 <= leaver[True]["p50_s"] <= 5
    assert _get(scenario.url + "/time-to-revoke", None)[0] == 401


def test_the_status_page_is_static_and_locked_down(scenario: Scenario) -> None:
    for path, kind in (("/", "text/html"), ("/status.js", "text/javascript")):
        with urllib.request.urlopen(scenario.url + path, timeout=10) as response:
            body = response.read().decode()
            headers = response.headers
        assert headers["Content-Type"].startswith(kind)
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert scenario.alice not in body, "the page holds no data"
        assert scenario.bob not in body
