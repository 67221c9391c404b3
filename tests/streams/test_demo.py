"""`accessdrift demo` as a user runs it: findings appear live, reach the SIEM stand-in as OCSF and
page the PagerDuty stand-in, the status page it links lists them in a real browser,
time-to-revoke is shown, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from selenium.webdriver.common.by import By

from accessdrift.streams.broker import wait_for_port
from tests.browser import chromium, wait_until

ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))


def _marked(mark: str) -> list[int]:
    """Processes whose environment holds `mark`: the demo and everything it started (its
    worker, delivery service and broker run in sessions of their own, and the other tests of
    the run start processes of their own, so neither a session nor a name tells them apart)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if mark.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _status_page_shows(url: str, identity: str, home: Path) -> list[str]:
    """Open the demo's status page link in a real browser; the summaries of `identity`'s open
    findings it lists."""
    with chromium(home) as browser:
        browser.get(url)
        selector = f'#findings tr[data-identity="{identity}"]'
        wait_until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, selector))
        return [row.text for row in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_the_demo_shows_a_live_finding_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    mark = f"ACCESSDRIFT_TEST_RUN={uuid.uuid4().hex}"
    name, value = mark.split("=")
    err_path = tmp_path / "demo.err"
    with err_path.open("w") as err:
        demo = subprocess.Popen(
            [ACCESSDRIFT, "demo"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, name: value},
        )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "  PAGE  " in line:
                break
        link = re.search(
            r"status page \(.*\): (http://127\.0\.0\.1:\d+/#token=\S+)", err_path.read_text()
        )
        assert link is not None, err_path.read_text()
        on_page = _status_page_shows(link[1], "alice", tmp_path)
        started = _marked(mark)
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        lines.extend(demo.stdout.readlines())
    finally:
        demo.kill()
        demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()

    opened = [line for line in lines if "  OPEN  " in line]
    assert opened, "".join(lines) + err_path.read_text()
    assert "alice was terminated" in opened[0]
    finding_id = opened[0].split("[", 1)[1][:8]
    siem = [line for line in lines if "  SIEM  " in line]
    assert any(f"ocsf      [{finding_id}]  Detection Finding 2004, activity Create" in line
               for line in siem), "".join(lines)  # fmt: skip
    assert any("alice was terminated" in row for row in on_page), on_page
    pages = [line for line in lines if "  PAGE  " in line]
    assert "trigger critical" in pages[0]
    assert "alice was terminated" in pages[0]
    errors = err_path.read_text()
    assert "accessdrift_time_to_revoke_seconds at http://127.0.0.1:" in errors
    summary = lines.index(next(x for x in lines if x.startswith("time to revoke, from")))
    assert "leaver" in lines[summary + 1]
    assert "met" in lines[summary + 1]
    assert any("event     identity.status" in line for line in lines)
    port = re.search(r"broker up at 127\.0\.0\.1:(\d+)", err_path.read_text())
    assert port is not None
    assert not wait_for_port("127.0.0.1", int(port[1]), 0.3)
    assert len(started) >= 4, "the demo, its worker, its delivery service and its broker"
    assert _marked(mark) == [], "Ctrl-C leaves no process behind"
