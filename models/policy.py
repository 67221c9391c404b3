"""Control windows and severities: the shipped defaults, overridable by a TOML or YAML file.

A policy file has one table per trigger; every key is optional and falls back to the default.
Durations are a number with a unit: `90s`, `15m`, `1h`, `7d` (a bare number is refused, so a
window's unit is always visible in the file), at most ten years. A policy file is small: one
larger than 1 MiB, or YAML using anchors and aliases (which can expand a few lines into
gigabytes), is refused before it is parsed any further.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from accessdrift.models.clock import MAX_DURATION_S
from accessdrift.models.errors import PolicyError
from accessdrift.models.text import ECHO_LIMIT, echo, printable
from accessdrift.models.vocabulary import Severity

_DURATION: Final = re.compile(r"^\s*(\d{1,12}(?:\.\d{1,9})?)\s*(s|m|h|d)\s*$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POLICY_BYTES: Final = 1 << 20


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


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a policy needs neither, and aliases nested a few
    levels deep expand into billions of nodes (the "billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"anchors and aliases are not allowed (line {line})")
        node: yaml.Node | None = super().compose_node(parent, index)
        return node


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


def _read(path: Path) -> Any:
    with path.open("rb") as stream:
        data = stream.read(MAX_POLICY_BYTES + 1)
    if len(data) > MAX_POLICY_BYTES:
        raise PolicyError(
            str(path), "", f"larger than {MAX_POLICY_BYTES // 1024} KiB; is it a policy file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(str(path), "", f"not UTF-8 text (byte {error.start})") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise PolicyError(
                str(path), "", f"not valid TOML: {printable(str(error), 200)}"
            ) from None
    if path.suffix in {".yaml", ".yml"}:
        try:
            return yaml.load(text, Loader=_NoAliasLoader) or {}
        except yaml.YAMLError as error:
            raise PolicyError(
                str(path), "", f"not valid YAML: {printable(str(error), 200)}"
            ) from None
    raise PolicyError(str(path), "", "unknown file type; name it *.toml, *.yaml or *.yml")


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises PolicyError naming the file and the field."""
    path = Path(path)
    try:
        data = _read(path)
    except OSError as error:
        raise PolicyError(str(path), "", f"cannot read: {error.strerror or error}") from None
    if not isinstance(data, dict):
        raise PolicyError(str(path), "", "expected a table of trigger sections at the top level")
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(printable(str(part), ECHO_LIMIT) for part in first["loc"])
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown setting; see the policy section of the README for the names"
        raise PolicyError(str(path), field, reason) from None
