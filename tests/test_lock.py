"""requirements.lock, which `make test` installs from, pins every dependency pyproject.toml
names (the runtime and the dev extra), at a version the specifier admits, with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")


def _locked() -> dict[str, tuple[str, int]]:
    """Name → (version, number of hashes) for each pin in the lock."""
    pins: dict[str, tuple[str, int]] = {}
    name = ""
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if match := PIN.match(line):
            name = canonicalize_name(match[1])
            pins[name] = (match[2], 0)
        elif line.strip().startswith("--hash=sha256:") and name:
            version, hashes = pins[name]
            pins[name] = (version, hashes + 1)
    return pins


def test_the_lock_pins_every_declared_dependency_at_an_admitted_version_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    locked = _locked()
    assert len(locked) > len(declared), "the lock holds the transitive dependencies too"
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside {requirement.specifier}: "
            "run `make lock`"
        )
    unhashed = sorted(name for name, (_, hashes) in locked.items() if hashes == 0)
    assert unhashed == [], "every pin carries hashes (pip installs with --require-hashes)"


def test_the_lock_names_no_machine_specific_index() -> None:
    text = (ROOT / "requirements.lock").read_text()
    assert "file://" not in text
    assert "--find-links" not in text
