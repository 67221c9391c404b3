"""`accessdrift report` over a simulated organisation, opened in a real headless browser (Debian's
chromium): it renders, and every number it shows agrees with the simulator's ground truth and
with `accessdrift replay` over the same history; the what-if agrees with a replay under the
other policy; and nothing in the input can become markup."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from selenium.webdriver.common.by import By

from accessdrift.alerts.report import summarise
from accessdrift.models.findings import FindingRecord, ObligationEnded
from tests.browser import chromium, keep_screenshot, wait_until

ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))
STRICT = '[leaver]\nwindow = "4h"\nprivileged_window = "30m"\n[mover]\nwindow = "3d"\n'
pytestmark = pytest.mark.xdist_group("report")


@dataclass
class Made:
    history: Path
    truth: Path
    until: str
    strict: Path
    metrics: dict[str, str]
    home: Path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCESSDRIFT, *args], capture_output=True, text=True, check=False, timeout=300
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    home = tmp_path_factory.mktemp("report")
    history, truth = home / "history.jsonl", home / "truth.jsonl"
    simulated = _run("simulate", "--identities", "300", "--seed", "3",
                     "--out", str(history), "--truth", str(truth))  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    until = simulated.stderr.rsplit("--until ", 1)[1].split()[0]
    (home / "strict.toml").write_text(STRICT)
    reported = _run("report", str(history), "--until", until, "--compare",
                    str(home / "strict.toml"), "--out", str(home / "report.html"),
                    "--title", "Acme access review")  # fmt: skip
    assert reported.returncode == 0, reported.stderr
    assert "report written to" in reported.stderr
    with chromium(home) as browser:
        browser.get((home / "report.html").as_uri())
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#time-to-revoke tr"))
        assert browser.title == "Acme access review"
        metrics = {
            element.get_attribute("data-metric"): element.text
            for element in browser.find_elements(By.CSS_SELECTOR, "[data-metric]")
        }
        assert browser.find_elements(By.CSS_SELECTOR, "#time-to-revoke svg rect.bar-on")
        assert browser.find_element(By.CSS_SELECTOR, "svg[data-metric=days]").size["width"] > 100
        keep_screenshot(browser, home, "report.png")
    return Made(history, truth, until, home / "strict.toml", metrics, home)


def _replay(made: Made, *extra: str) -> list[dict[str, object]]:
    result = _run("replay", str(made.history), "--until", made.until, "--evidence", "-", *extra)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_met_late_and_unmet_per_trigger_are_the_simulators_truth(made: Made) -> None:
    truth: Counter[tuple[str, str]] = Counter()
    for line in made.truth.read_text().splitlines():
        entry = json.loads(line)
        if entry["record_type"] == "obligation":
            truth[(entry["trigger"], entry["expect"])] += 1
    shown: Counter[tuple[str, str]] = Counter()
    for name, text in made.metrics.items():
        parts = name.split(".")
        if len(parts) == 3 and parts[2] in ("on_time", "late", "unmet"):
            shown[(parts[0], {"unmet": "open"}.get(parts[2], parts[2]))] += int(text)
    assert +shown == +truth


def test_findings_open_at_end_and_offboarding_agree_with_a_replay(made: Made) -> None:
    records = _replay(made)
    opened = [r for r in records if r["record_type"] == "finding" and r["status"] == "open"]
    resolved = {r["finding_id"] for r in records if r.get("status") == "resolved"}
    per_trigger = Counter(str(r["trigger"]) for r in opened)

    for trigger, count in per_trigger.items():
        assert made.metrics[f"findings.{trigger}"] == str(count), trigger
    assert made.metrics["open_at_end"] == str(sum(r["finding_id"] not in resolved for r in opened))
    offboarded = [r for r in records if r["record_type"] == "offboarding"]
    assert made.metrics["offboarded"] == str(len(offboarded))
    within = sum(bool(r["all_within_window"]) for r in offboarded)
    assert made.metrics["offboarded_within_window"] == str(within)


def test_the_what_if_is_a_replay_under_the_other_policy(made: Made) -> None:
    strict = _replay(made, "--policy", str(made.strict))
    opened = Counter(
        str(r["trigger"]) for r in strict if r["record_type"] == "finding" and r["status"] == "open"
    )
    shown: Counter[str] = Counter()
    base: Counter[str] = Counter()
    for name, text in made.metrics.items():
        if name.startswith("compare.") and name.endswith(".findings.other"):
            shown[name.split(".")[1]] += int(text)
        if name.startswith("compare.") and name.endswith(".findings.base"):
            base[name.split(".")[1]] += int(text)
    assert +shown == +opened
    assert shown["leaver"] > base["leaver"], "shorter leaver windows raise more findings"


def test_a_screenshot_of_the_report_is_taken(made: Made) -> None:
    assert (made.home / "report.png").read_bytes().startswith(b"\x89PNG")


def test_titles_and_names_from_the_command_line_stay_text(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps({"topic": "identity.status", "value": {
            "event_id": "e1", "occurred_at": "2026-01-05T00:00:00Z",
            "identity_id": "<img src=x onerror=alert(1)>", "status": "terminated"}}) + "\n"
    )  # fmt: skip
    out = tmp_path / "report.html"
    result = _run("report", str(events), "--out", str(out), "--title", "<script>x()</script>")
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<img" not in page


def test_a_policy_that_does_not_load_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[leaver]\nwindow = "soon"\n')
    (tmp_path / "events.jsonl").write_text("")
    result = _run("report", str(tmp_path / "events.jsonl"), "--out", str(tmp_path / "r.html"),
                  "--compare", str(tmp_path / "bad.toml"))  # fmt: skip
    assert result.returncode == 2
    assert "bad.toml" in result.stderr
    assert not (tmp_path / "r.html").exists()


def _ended(fid: str, outcome: str, revoke_s: int | None, privileged: bool) -> ObligationEnded:
    return ObligationEnded(
        finding_id=fid, identity_id="u", identity_kind="human", trigger="leaver", system="s",
        entitlement="e", entitlement_kind="role", privileged=privileged, severity="high",
        triggered_at_us=0, deadline_us=3600_000_000, ended_at_us=(revoke_s or 0) * 1_000_000,
        outcome=outcome, resolution=None, exception_id=None,  # type: ignore[arg-type]
        time_to_revoke_us=None if revoke_s is None else revoke_s * 1_000_000,
    )  # fmt: skip


def _open(fid: str) -> FindingRecord:
    return FindingRecord(
        finding_id=fid, kind="access_not_revoked", trigger="leaver", status="open",
        identity_id="u", identity_kind="human", system="s", entitlement="e",
        entitlement_kind="role", device_id=None, severity="critical", triggered_at_us=0,
        deadline_us=3600_000_000, detected_at_us=3600_000_000, resolved_at_us=None,
        trigger_event_id="t", exception_id=None, summary="",
    )  # fmt: skip


def test_summarise_counts_exact_percentiles_and_privileged_open_findings() -> None:
    ended = [_ended(f"f{n}", "on_time", 60 * n, False) for n in range(1, 11)]
    ended.append(_ended("p1", "late", 7200, True))
    # p1 opened and was resolved after 2 h (late); p2 is still open at the end.
    resolved = msgspec.structs.replace(_open("p1"), status="resolved", resolved_at_us=7200_000_000)
    records = [_open("p1"), resolved, _open("p2")]

    summary = summarise(records, ended, open_privileged=frozenset({"p2"}))
    ordinary, privileged = summary.rows

    assert (ordinary.on_time, ordinary.late, ordinary.unmet) == (10, 0, 0)
    assert (ordinary.p50_s, ordinary.p90_s) == (300, 540), "nearest rank over 1..10 minutes"
    assert ordinary.within_window == 1.0
    assert (privileged.on_time, privileged.late, privileged.unmet) == (0, 1, 1)
    assert privileged.findings == 2
    assert privileged.within_window == 0.0
    assert privileged.p50_s == 7200
    assert summary.open_at_end == 1
