"""The ingest settings file: where to listen, which Shared Signals transmitters to trust, and
which webhook sources to take, with the mapping of each source's JSON onto the contract.

```toml
[listen]
host = "127.0.0.1"
port = 8470

[[transmitters]]                       # OpenID Shared Signals push (RFC 8935): POST /ssf/okta
name = "okta"
issuer = "https://acme.okta.com"
audience = "https://accessdrift.acme.example/ssf/okta"
jwks_url = "https://acme.okta.com/oauth2/v1/keys"   # or jwks_file
subjects.identity = { email = "{email}", iss_sub = "{sub}" }

[[webhooks]]                           # Standard Webhooks: POST /webhooks/jamf
name = "jamf"
stream = "device.posture"
secrets = [{ env = "JAMF_WEBHOOK_SECRET" }]
fields.device_id = "/event/udid"
fields.posture = { pointer = "/event/compliance", values = { Compliant = "compliant" } }
fields.occurred_at = "/event/time"
```
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from accessdrift.models.config import SecretRef, load_config
from accessdrift.models.errors import ConfigError
from accessdrift.models.events import DEVICE_POSTURE, ENTITLEMENT_CHANGE, IDENTITY_STATUS

#: Algorithms a transmitter may sign with: asymmetric only, so a public key can never be used
#: as an HMAC secret (the RS256/HS256 confusion), and never `none`.
Algorithm = Literal["RS256", "ES256"]
#: RFC 9493 subject identifier formats a template can map, and the fields each one offers.
SUBJECT_FIELDS: Final[dict[str, frozenset[str]]] = {
    "email": frozenset({"email"}),
    "iss_sub": frozenset({"iss", "sub"}),
    "opaque": frozenset({"id"}),
    "account": frozenset({"uri"}),
    "uri": frozenset({"uri"}),
    "phone_number": frozenset({"phone_number"}),
    "did": frozenset({"url"}),
    # RFC 9967: a SCIM resource by its `uri` (`/Users/<id>`); `id` is the last part of it.
    "scim": frozenset({"uri", "id", "externalId"}),
}
SubjectFormat = Literal[
    "email", "iss_sub", "opaque", "account", "uri", "phone_number", "did", "scim"
]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Pointer = Annotated[str, Field(pattern=r"^(/[^/]*)+$", max_length=512)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_template(template: str, allowed: frozenset[str], where: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    unknown = sorted(set(names) - allowed)
    if unknown or not names:
        raise ValueError(
            f"{where}: a template names the subject's fields in braces, one of "
            f"{sorted(allowed)} (found {unknown or 'none'})"
        )


class Subjects(_Settings):
    """How subject identifiers become contract keys: a template per format, such as
    `{ email = "{email}", iss_sub = "{sub}" }`. A subject of a format without a template is
    refused (400 `invalid_request`), so no signal lands on a key nobody meant."""

    identity: dict[SubjectFormat, str] = Field(default_factory=dict)
    device: dict[SubjectFormat, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _templates(self) -> Subjects:
        for side, templates in (("identity", self.identity), ("device", self.device)):
            for format_name, template in templates.items():
                _check_template(template, SUBJECT_FIELDS[format_name], f"{side}.{format_name}")
        return self


class Transmitter(_Settings):
    """One Shared Signals transmitter, pushing SETs to `POST /ssf/<name>`."""

    name: Name
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: Path | None = None
    jwks_url: HttpUrl | None = None
    algorithms: tuple[Algorithm, ...] = ("RS256", "ES256")
    #: How old a SET's `iat` may be (seconds); transmitters retry, so allow for an outage.
    max_age_s: int = Field(default=3600, alias="max_age", gt=0, le=7 * 86400)
    #: The bearer token the transmitter sends in `Authorization` (RFC 8935 section 2), if any.
    token: SecretRef | None = None
    #: The system a session or credential change is about, in `entitlement.change`.
    system: Name | None = None
    #: The entitlement a `session-revoked` without a session subject revokes.
    sessions_entitlement: str = Field(default="sessions", min_length=1)
    #: Claims of `token-claims-change` that carry the role and the status, if any.
    role_claim: str | None = "role"
    status_claim: str | None = None
    subjects: Subjects = Subjects()

    @model_validator(mode="after")
    def _one_key_source(self) -> Transmitter:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("name exactly one of jwks_file or jwks_url")
        if not self.subjects.identity and not self.subjects.device:
            raise ValueError("subjects: give at least one template, e.g. identity.email")
        return self

    @property
    def system_name(self) -> str:
        return self.system or self.name


class FieldSpec(_Settings):
    """One contract field taken from the payload: at a JSON pointer (RFC 6901), optionally
    translated through `values` (a value not listed is refused), or a constant `value`."""

    pointer: Pointer | None = None
    values: dict[str, str | bool] | None = None
    value: str | bool | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if (self.pointer is None) == (self.value is None):
            raise ValueError("give exactly one of pointer or value")
        if self.values is not None and self.pointer is None:
            raise ValueError("values translates what a pointer finds; give a pointer")
        return self


WEBHOOK_STREAMS: Final = (IDENTITY_STATUS, DEVICE_POSTURE, ENTITLEMENT_CHANGE)
#: Fields a webhook mapping may fill, per stream (`event_id` comes from `webhook-id`).
WEBHOOK_FIELDS: Final[dict[str, frozenset[str]]] = {
    IDENTITY_STATUS: frozenset(
        {"identity_id", "status", "identity_kind", "role", "owner_id", "occurred_at"}
    ),
    DEVICE_POSTURE: frozenset({"device_id", "posture", "identity_ids", "occurred_at"}),
    ENTITLEMENT_CHANGE: frozenset(
        {
            "identity_id",
            "system",
            "entitlement",
            "action",
            "kind",
            "privileged",
            "device_id",
            "requires_trusted_device",
            "occurred_at",
        }
    ),
}
#: The field a stream's records are keyed by.
KEY_FIELD: Final = {
    IDENTITY_STATUS: "identity_id",
    DEVICE_POSTURE: "device_id",
    ENTITLEMENT_CHANGE: "identity_id",
}


class Webhook(_Settings):
    """One source posting its own JSON, signed the Standard Webhooks way, to
    `POST /webhooks/<name>`; `fields` says where each contract field is."""

    name: Name
    stream: Literal["identity.status", "device.posture", "entitlement.change"]
    #: Every secret that may sign (`whsec_` + base64, as Standard Webhooks prints them): two
    #: during a rotation, the old one removed once the source has switched.
    secrets: tuple[SecretRef, ...] = Field(min_length=1, max_length=4)
    #: How far a `webhook-timestamp` may be from now (seconds), either way.
    tolerance_s: int = Field(default=300, alias="tolerance", gt=0, le=3600)
    fields: dict[str, Pointer | FieldSpec]

    @model_validator(mode="after")
    def _fields_fit_stream(self) -> Webhook:
        unknown = sorted(set(self.fields) - WEBHOOK_FIELDS[self.stream])
        if unknown:
            raise ValueError(
                f"fields {unknown} are not part of {self.stream}; "
                f"use {sorted(WEBHOOK_FIELDS[self.stream])}"
            )
        for needed in (KEY_FIELD[self.stream], "occurred_at"):
            if needed not in self.fields:
                raise ValueError(f"fields.{needed} is required for {self.stream}")
        return self

    def field(self, name: str) -> FieldSpec | None:
        spec = self.fields.get(name)
        return FieldSpec(pointer=spec) if isinstance(spec, str) else spec


class Listen(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)


class IngestSettings(_Settings):
    listen: Listen = Listen()
    transmitters: tuple[Transmitter, ...] = ()
    webhooks: tuple[Webhook, ...] = ()

    @model_validator(mode="after")
    def _names_unique(self) -> IngestSettings:
        if not self.transmitters and not self.webhooks:
            raise ValueError("nothing to receive: add [[transmitters]] or [[webhooks]]")
        names = [t.name for t in self.transmitters] + [w.name for w in self.webhooks]
        if len(names) != len(set(names)):
            raise ValueError("every transmitter and webhook needs its own name")
        return self


class IngestSettingsError(ConfigError):
    """The ingest settings file cannot be used."""


def load_ingest_settings(path: str | Path) -> IngestSettings:
    """Read and validate the ingest settings; raises IngestSettingsError naming the field."""
    settings = load_config(path, IngestSettings, IngestSettingsError, "a table of settings")
    base = Path(path).parent
    transmitters = tuple(
        t.model_copy(update={"jwks_file": base / t.jwks_file}) if t.jwks_file else t
        for t in settings.transmitters
    )
    return settings.model_copy(update={"transmitters": transmitters})
