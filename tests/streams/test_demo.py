"""`accessdrift demo` as a user runs it: findings appear live, reach the SIEM stand-in as OCSF and
page the PagerDuty stand-in, time-to-revoke is shown, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from accessdrift.streams.broker import wait_for_port

ACCESSDRIFT = str(Path(sys.executable).with_name("accessdrift"))


def _workers() -> set[str]:
    found = subprocess.run(
        ["pgrep", "-f", "accessdrift.streams.cli (worker|notify)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return set(found.stdout.split())


def test_the_demo_shows_a_live_finding_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    before = _workers()
    err_path = tmp_path / "demo.err"
    with err_path.open("w") as err:
        demo = subprocess.Popen(
            [ACCESSDRIFT, "demo"], stdout=subprocess.PIPE, stderr=err, text=True
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
    assert _workers() <= before
