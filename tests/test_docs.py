"""The README and docs/: every relative link leads to a file that exists, and the README's first
screen says what accessdrift is, gives the two commands and shows the status page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_and_picture_exists() -> None:
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_the_first_screen_has_the_pitch_the_two_commands_and_the_status_page() -> None:
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "state change whose access change does not land" in first_screen
    assert "make demo" in first_screen
    assert "make test" in first_screen
    assert "![The status page" in first_screen
    assert "(docs/images/status-page.png)" in first_screen


def test_there_is_a_page_for_the_contract_the_policy_deployment_and_operations() -> None:
    names = {page.name for page in DOCS}
    assert {"contract.md", "policy.md", "deployment.md", "operations.md"} <= names
