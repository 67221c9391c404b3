"""The status page at `/`, in a real headless browser (Debian's chromium through chromium-driver)
against a live worker: it asks for the token, lists the open findings, shows an identity's
access picture, charts time to revoke, and shows hostile names as text."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser import chromium, keep_screenshot, wait_until
from tests.streams.api_scenario import TOKEN, Scenario

# One worker and one browser for the module, on one test process.
pytestmark = pytest.mark.xdist_group("status_page")
#: What the page shows for a value that is not there (an en dash).
NONE = "\u2013"


def _at(offset_s: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    return moment.isoformat().replace("+00:00", "Z")


def _leaver(who: str, grants: list[tuple[str, str, bool]], revoked: int) -> list[dict[str, Any]]:
    """`who` joined, was granted `grants`, was terminated 40 s ago; the first `revoked` grants
    were revoked 1 s after."""
    events: list[dict[str, Any]] = [
        {"topic": "identity.status", "value": {
            "event_id": f"{who}-1", "occurred_at": _at(-120), "identity_id": who,
            "status": "active", "role": "engineer"}},
    ]  # fmt: skip
    for number, (system, entitlement, privileged) in enumerate(grants):
        events.append(
            {"topic": "entitlement.change", "value": {
                "event_id": f"{who}-g{number}", "occurred_at": _at(-110), "identity_id": who,
                "system": system, "entitlement": entitlement, "action": "granted",
                "privileged": privileged}}
        )  # fmt: skip
    events.append(
        {"topic": "identity.status", "value": {
            "event_id": f"{who}-t", "occurred_at": _at(-40), "identity_id": who,
            "status": "terminated", "role": "engineer"}}
    )  # fmt: skip
    for number, (system, entitlement, _) in enumerate(grants[:revoked]):
        events.append(
            {"topic": "entitlement.change", "value": {
                "event_id": f"{who}-r{number}", "occurred_at": _at(-39), "identity_id": who,
                "system": system, "entitlement": entitlement, "action": "revoked"}}
        )  # fmt: skip
    return events


def _open_findings(scenario: Scenario) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        scenario.url + "/findings?status=open", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        findings: list[dict[str, Any]] = json.load(response)["findings"]
    return findings


def _wait_for_open(scenario: Scenario, identities: set[str], count: int) -> None:
    deadline = time.monotonic() + 60
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        mine = [f for f in _open_findings(scenario) if f["identity_id"] in identities]
        if len(mine) >= count:
            return
        time.sleep(0.5)
    raise AssertionError(f"{len(mine)} of {count} findings opened: {mine}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def _rows(driver: WebDriver, selector: str) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, selector)
    ]


def test_without_a_token_the_page_asks_for_one_and_refuses_a_wrong_one(
    scenario: Scenario, browser: WebDriver
) -> None:
    browser.get(scenario.url + "/")
    login = wait_until(browser, lambda d: d.find_element(By.ID, "login"))
    wait_until(browser, lambda d: login.is_displayed())
    assert not browser.find_element(By.ID, "main").is_displayed()
    assert scenario.bob not in browser.page_source

    browser.find_element(By.ID, "token").send_keys("not-the-token\n")
    error = browser.find_element(By.ID, "login-error")
    wait_until(browser, lambda d: "Authorization: Bearer" in error.text)
    assert not browser.find_element(By.ID, "main").is_displayed()

    browser.find_element(By.ID, "token").send_keys(TOKEN + "\n")
    wait_until(browser, lambda d: d.find_element(By.ID, "main").is_displayed())


def test_the_page_lists_the_open_findings_and_charts_time_to_revoke(
    scenario: Scenario, browser: WebDriver, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:4]
    people = {
        f"dana-{suffix}": ([("github", "org:acme/admin", True), ("slack", "workspace", False),
                            ("jira", "project:OPS", False)], 1),
        f"eve-{suffix}": ([("aws", "prod/AdministratorAccess", True),
                           ("salesforce", "sales-user", False)], 0),
        f"frank-{suffix}": ([("okta", "admin-console", True), ("zoom", "licence", False)], 2),
    }  # fmt: skip
    events = [e for who, (grants, revoked) in people.items() for e in _leaver(who, grants, revoked)]
    scenario.worker.produce(tmp_path, *events)
    _wait_for_open(scenario, set(people), 4)  # dana 2, eve 2, frank none

    # The token in the fragment: never sent to the server, and gone from the address bar.
    browser.get(f"{scenario.url}/#token={TOKEN}")
    wait_until(browser, lambda d: d.execute_script("return document.body.dataset.loaded"))
    assert "token" not in browser.current_url
    shown = {tuple(row[1:4]) for row in _rows(browser, "#findings tbody tr")}
    api = {(f["trigger"], f["identity_id"], f"{f['system']} · {f['entitlement']}")
           for f in _open_findings(scenario)}  # fmt: skip
    assert shown == api
    assert ("leaver", f"eve-{suffix}", "aws · prod/AdministratorAccess") in shown
    assert ("leaver", scenario.bob, "jira · seat") in shown
    assert browser.find_element(By.ID, "open-count").text == str(len(api))
    severities = [row[0] for row in _rows(browser, "#findings tbody tr")]
    assert severities == sorted(severities, key=["critical", "high", "medium", "low"].index)

    # Time to revoke: the leaver rows agree with the worker's /time-to-revoke.
    rows = {
        row.get_attribute("data-privileged"): [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#ttr-table tbody tr")
        if row.get_attribute("data-trigger") == "leaver"
    }
    request = urllib.request.Request(
        scenario.url + "/time-to-revoke", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        truth = {str(t["privileged"]).lower(): t for t in json.load(response)["triggers"]}
    for privileged in ("true", "false"):
        expected = truth[privileged]
        assert rows[privileged][3] == str(expected["on_time"] + expected["late"])
        assert rows[privileged][2] == f"{round(100 * expected['within_window'])} %"
    assert browser.find_elements(By.CSS_SELECTOR, "#ttr-table svg.bar rect.on-time")

    # For the README's picture: one leaver's access picture open below the findings.
    browser.find_element(By.CSS_SELECTOR, f'#findings tr[data-identity="dana-{suffix}"]').click()
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#entitlements tbody tr"))
    keep_screenshot(browser, tmp_path, "status-page.png")


def test_an_identity_search_shows_its_entitlements(scenario: Scenario, browser: WebDriver) -> None:
    browser.get(f"{scenario.url}/#token={TOKEN}")
    wait_until(browser, lambda d: d.execute_script("return document.body.dataset.loaded"))
    search = browser.find_element(By.ID, "identity")
    search.clear()
    search.send_keys(scenario.bob + "\n")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#entitlements tbody tr"))
    assert _rows(browser, "#entitlements tbody tr") == [
        ["jira", "seat", "role", "no", NONE, _granted_at(scenario, scenario.bob)]
    ]
    facts = browser.find_element(By.CSS_SELECTOR, "#picture .facts").text
    assert "terminated" in facts

    # A clicked finding opens its identity's picture; an identity nobody named is said so.
    search.clear()
    search.send_keys("nobody-at-all\n")
    wait_until(browser, lambda d: "no event has named" in d.find_element(By.ID, "picture").text)
    browser.find_element(By.CSS_SELECTOR, f'#findings tr[data-identity="{scenario.bob}"]').click()
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#entitlements tbody tr"))
    assert browser.find_element(By.ID, "identity").get_attribute("value") == scenario.bob


def _granted_at(scenario: Scenario, who: str) -> str:
    request = urllib.request.Request(
        f"{scenario.url}/identities/{who}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        (entitlement,) = json.load(response)["entitlements"]
    return str(entitlement["granted_at"])


def test_names_that_look_like_markup_are_shown_as_text(
    scenario: Scenario, browser: WebDriver, tmp_path: Path
) -> None:
    who = f"mallory-{uuid.uuid4().hex[:4]}"
    hostile = '<img src=x onerror="document.body.dataset.pwned=1">'
    scenario.worker.produce(tmp_path, *_leaver(who, [("<b>app</b>", hostile, False)], 0))
    _wait_for_open(scenario, {who}, 1)

    browser.get(f"{scenario.url}/#token={TOKEN}")
    wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-identity="{who}"]'))
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-identity="{who}"]')
    assert f"<b>app</b> · {hostile}" in row.text
    assert not row.find_elements(By.TAG_NAME, "img")
    assert not row.find_elements(By.TAG_NAME, "b")
    assert browser.execute_script("return document.body.dataset.pwned") is None
