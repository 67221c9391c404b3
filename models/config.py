"""Reading a settings file (a policy, the delivery service's sinks): TOML or YAML, small, safe,
validated by a pydantic model, with errors naming the file and the field to fix.

A settings file is small: one larger than 1 MiB, or YAML using anchors and aliases (which can
expand a few lines into gigabytes), is refused before it is parsed any further.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from accessdrift.models.errors import ConfigError
from accessdrift.models.text import ECHO_LIMIT, printable

MAX_CONFIG_BYTES: Final = 1 << 20
#: A secret file larger than this is not a secret (a path typed wrong, a certificate bundle).
MAX_SECRET_BYTES: Final = 64 * 1024
Model = TypeVar("Model", bound=BaseModel)


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: a settings file needs neither, and aliases nested
    a few levels deep expand into billions of nodes (the "billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(f"anchors and aliases are not allowed (line {line})")
        node: yaml.Node | None = super().compose_node(parent, index)
        return node


def _read(path: Path, error: type[ConfigError]) -> Any:
    with path.open("rb") as stream:
        data = stream.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        raise error(
            str(path), "", f"larger than {MAX_CONFIG_BYTES // 1024} KiB; is it the right file?"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise error(str(path), "", f"not UTF-8 text (byte {failure.start})") from None
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as failure:
            raise error(str(path), "", f"not valid TOML: {printable(str(failure), 200)}") from None
    if path.suffix in {".yaml", ".yml"}:
        try:
            return yaml.load(text, Loader=_NoAliasLoader) or {}
        except yaml.YAMLError as failure:
            raise error(str(path), "", f"not valid YAML: {printable(str(failure), 200)}") from None
    raise error(str(path), "", "unknown file type; name it *.toml, *.yaml or *.yml")


def field_path(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as a person writes it: `sinks[2].token.env`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = printable(str(part), ECHO_LIMIT)
            text = f"{text}.{shown}" if text else shown
    return text


def load_config(
    path: str | Path, model: type[Model], error: type[ConfigError], expected: str
) -> Model:
    """Read and validate a settings file as `model`. Raises `error` naming the file and the
    field; `expected` says what the top level should be ("a table of trigger sections")."""
    path = Path(path)
    try:
        data = _read(path, error)
    except OSError as failure:
        raise error(str(path), "", f"cannot read: {failure.strerror or failure}") from None
    if not isinstance(data, dict):
        raise error(str(path), "", f"expected {expected} at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as failure:
        first = failure.errors(include_url=False)[0]
        reason = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            reason = "unknown setting; see the README for the names"
        raise error(str(path), field_path(tuple(first["loc"])), reason) from None


class SecretRef(BaseModel):
    """Where a secret is: an environment variable or a file (exactly one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, min_length=1)
    file: Path | None = None

    @model_validator(mode="after")
    def _one_place(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("name exactly one of env (a variable) or file (a path)")
        return self

    def read(self, environ: Mapping[str, str]) -> SecretStr:
        """The secret; raises ValueError saying what is missing (never the secret itself)."""
        if self.env is not None:
            value = environ.get(self.env)
            if not value:
                raise ValueError(f"environment variable {self.env} is not set or empty")
            return SecretStr(value)
        assert self.file is not None
        try:
            with self.file.open("rb") as stream:
                data = stream.read(MAX_SECRET_BYTES + 1)
        except OSError as error:
            raise ValueError(f"cannot read {self.file}: {error.strerror or error}") from None
        if len(data) > MAX_SECRET_BYTES:
            raise ValueError(f"{self.file} is larger than {MAX_SECRET_BYTES // 1024} KiB")
        try:
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{self.file} is not UTF-8 text") from None
        if not value:
            raise ValueError(f"{self.file} is empty")
        return SecretStr(value)
