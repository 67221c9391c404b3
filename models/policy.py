"""Control windows and severities: the shipped defaults, overridable by a TOML or YAML file.

A policy file has one table per trigger; every key is optional and falls back to the default.
Durations are a number with a unit: `90s`, `15m`, `1h`, `7d` (a bare number is refused, so a
window's unit is always visible in the file), at most ten years. The file is read by
`models/config.py` (small, safe, errors naming the file and the field).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from accessdrift.models.clock import MAX_DURATION_S
from accessdrift.models.config import load_config
from accessdrift.models.errors import PolicyError
from accessdrift.models.text import echo
from accessdrift.models.vocabulary import Severity

_DURATION: Final = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*(s|m|h|d)\s*$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_s(value: object) -> int:
    """Seconds in a duration such as `15m`; raises ValueError saying how to write one."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = round(float(match[1]) * _UNIT_S[match[2]])
        if seconds > MAX_DURATION_S:
            raise ValueError(
                f"duration {echo(value)} is longer than the limit of {MAX_DURATION_S // 86_400}d"
            )
        return seconds
    raise ValueError(
        f"invalid duration {echo(value)}: write a number with a unit s, m, h or d, such as '15m'"
    )


Seconds = Annotated[int, BeforeValidator(parse_duration_s), Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeaverPolicy(_Section):
    window_s: Seconds = Field(default=24 * 3600, alias="window")
    privileged_window_s: Seconds = Field(default=3600, alias="privileged_window")
    severity: Severity = "high"
    privileged_severity: Severity = "critical"


class SuspensionPolicy(_Section):
    window_s: Seconds = Field(default=3600, alias="window")
    severity: Severity = "high"
    privileged_severity: Severity = "critical"


class MoverPolicy(_Section):
    window_s: Seconds = Field(default=7 * 86400, alias="window")
    severity: Severity = "medium"
    privileged_severity: Severity = "medium"


class DeviceUntrustedPolicy(_Section):
    lost_window_s: Seconds = Field(default=15 * 60, alias="lost_window")
    unenrolled_window_s: Seconds = Field(default=3600, alias="unenrolled_window")
    noncompliant_window_s: Seconds = Field(default=4 * 3600, alias="noncompliant_window")
    severity: Severity = "high"
    privileged_severity: Severity = "critical"

    def window_s(self, posture: str) -> int:
        """The window for a device that became `posture` (lost, unenrolled or noncompliant)."""
        return int(getattr(self, f"{posture}_window_s"))


class OwnerDepartedPolicy(_Section):
    window_s: Seconds = Field(default=7 * 86400, alias="window")
    severity: Severity = "medium"


class JoinerPolicy(_Section):
    window_s: Seconds = Field(default=24 * 3600, alias="window")
    severity: Severity = "low"


class GrantWhileInactivePolicy(_Section):
    severity: Severity = "high"
    privileged_severity: Severity = "critical"


class Policy(_Section):
    """Every control window (seconds) and severity the engine applies."""

    leaver: LeaverPolicy = LeaverPolicy()
    suspension: SuspensionPolicy = SuspensionPolicy()
    mover: MoverPolicy = MoverPolicy()
    device_untrusted: DeviceUntrustedPolicy = DeviceUntrustedPolicy()
    owner_departed: OwnerDepartedPolicy = OwnerDepartedPolicy()
    joiner: JoinerPolicy = JoinerPolicy()
    grant_while_inactive: GrantWhileInactivePolicy = GrantWhileInactivePolicy()

    def windows_s(self) -> set[int]:
        """Every control window in the policy (seconds), whichever trigger it belongs to."""
        windows = set()
        for name in type(self).model_fields:
            section = getattr(self, name)
            for field in type(section).model_fields:
                if field.endswith("window_s"):
                    windows.add(int(getattr(section, field)))
        return windows


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises PolicyError naming the file and the field."""
    return load_config(path, Policy, PolicyError, "a table of trigger sections")
