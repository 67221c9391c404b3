"""Policy files: shipped defaults, TOML or YAML overrides, errors naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from accessdrift.models.errors import PolicyError
from accessdrift.models.policy import Policy, load_policy, parse_duration_s


def test_defaults_are_the_shipped_control_windows() -> None:
    policy = Policy()

    assert (policy.leaver.privileged_window_s, policy.leaver.window_s) == (3600, 86400)
    assert policy.suspension.window_s == 3600
    assert policy.mover.window_s == 7 * 86400
    assert policy.device_untrusted.window_s("lost") == 900
    assert policy.device_untrusted.window_s("unenrolled") == 3600
    assert policy.device_untrusted.window_s("noncompliant") == 4 * 3600
    assert policy.owner_departed.window_s == 7 * 86400
    assert policy.joiner.window_s == 86400


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("7d", 604800), ("1.5h", 5400)]
)
def test_durations_carry_their_unit(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


def test_toml_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[leaver]\nwindow = "2h"\n[device_untrusted]\nlost_window = "5m"\n')

    policy = load_policy(path)

    assert policy.leaver.window_s == 7200
    assert policy.leaver.privileged_window_s == 3600
    assert policy.device_untrusted.window_s("lost") == 300


def test_yaml_is_read_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("joiner:\n  window: 30m\n  severity: medium\n")

    policy = load_policy(path)

    assert (policy.joiner.window_s, policy.joiner.severity) == (1800, "medium")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("p.toml", "[leaver]\nwindow = 3600\n", "p.toml: leaver.window: invalid duration '3600'"),
        ("p.toml", '[leaver]\nwindow = "1x"\n', "leaver.window: invalid duration '1x'"),
        ("p.toml", '[leaver]\nwindo = "1h"\n', "p.toml: leaver.windo: unknown setting"),
        ("p.toml", '[leavers]\nwindow = "1h"\n', "p.toml: leavers: unknown setting"),
        ("p.toml", '[joiner]\nseverity = "urgent"\n', "p.toml: joiner.severity: Input should be"),
        ("p.toml", "[leaver\n", "p.toml: not valid TOML"),
        ("p.yaml", "leaver: [\n", "p.yaml: not valid YAML"),
        ("p.yaml", "- 1\n", "p.yaml: expected a table of trigger sections"),
        ("p.json", "{}", "p.json: unknown file type"),
    ],
)
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(text)

    with pytest.raises(PolicyError) as caught:
        load_policy(path)

    assert expected in str(caught.value)
    assert str(tmp_path) in str(caught.value)


def test_a_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.toml")
