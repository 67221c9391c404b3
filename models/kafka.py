"""How every Kafka client of accessdrift connects: TLS and SASL, from `ACCESSDRIFT_KAFKA_*`
environment variables, the same for the worker, the delivery service, `produce` and the rest.

- `ACCESSDRIFT_KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT` (default), `SSL`, `SASL_SSL` or
  `SASL_PLAINTEXT` (Kafka's names).
- TLS: the broker's certificate is always verified, against the system's trust store or
  `ACCESSDRIFT_KAFKA_CA_FILE`, including its host name. A client certificate is optional:
  `ACCESSDRIFT_KAFKA_CERT_FILE` and `ACCESSDRIFT_KAFKA_KEY_FILE` (PEM).
- SASL: `ACCESSDRIFT_KAFKA_SASL_MECHANISM` (`SCRAM-SHA-256`, `SCRAM-SHA-512` or `PLAIN`),
  `ACCESSDRIFT_KAFKA_SASL_USERNAME`, and the password in `ACCESSDRIFT_KAFKA_SASL_PASSWORD` or a
  file named by `ACCESSDRIFT_KAFKA_SASL_PASSWORD_FILE`.
- SASL without TLS leaves every record readable on the wire: refused unless
  `ACCESSDRIFT_KAFKA_ALLOW_UNENCRYPTED_SASL=true`; PLAIN (which sends the password itself) is
  refused without TLS even then.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, model_validator

from accessdrift.models.config import SecretRef
from accessdrift.models.errors import ConfigError
from accessdrift.models.text import parse_switch

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]

PREFIX = "ACCESSDRIFT_KAFKA_"


class KafkaSecurityError(ConfigError):
    """The Kafka connection settings cannot be used; the message names the variable to fix."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__("environment", variable, reason)


class KafkaSecurity(BaseModel):
    """TLS and SASL settings of a Kafka client (see the module's doc for the variables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: SecurityProtocol = "PLAINTEXT"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    allow_unencrypted_sasl: bool = False

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_SSL", "SASL_PLAINTEXT")

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        tls_files = {
            "CA_FILE": self.ca_file,
            "CERT_FILE": self.cert_file,
            "KEY_FILE": self.key_file,
        }
        if not self.tls:
            for name, value in tls_files.items():
                if value is not None:
                    raise KafkaSecurityError(
                        PREFIX + name, f"is set but the protocol {self.protocol} has no TLS"
                    )
        if (self.cert_file is None) != (self.key_file is None):
            raise KafkaSecurityError(
                PREFIX + "CERT_FILE",
                "a client certificate needs both CERT_FILE and KEY_FILE",
            )
        sasl_fields = (self.sasl_mechanism, self.sasl_username, self.sasl_password)
        if not self.sasl:
            if any(value is not None for value in sasl_fields):
                raise KafkaSecurityError(
                    PREFIX + "SASL_MECHANISM",
                    f"SASL settings are set but the protocol {self.protocol} has no SASL: "
                    "use SASL_SSL",
                )
            return self
        if self.sasl_mechanism is None or not self.sasl_username or self.sasl_password is None:
            raise KafkaSecurityError(
                PREFIX + "SASL_MECHANISM",
                f"{self.protocol} needs SASL_MECHANISM, SASL_USERNAME and SASL_PASSWORD "
                "(or SASL_PASSWORD_FILE)",
            )
        if self.protocol == "SASL_PLAINTEXT":
            if self.sasl_mechanism == "PLAIN":
                raise KafkaSecurityError(
                    PREFIX + "SECURITY_PROTOCOL",
                    "SASL PLAIN sends the password in clear text: use SASL_SSL",
                )
            if not self.allow_unencrypted_sasl:
                raise KafkaSecurityError(
                    PREFIX + "SECURITY_PROTOCOL",
                    "SASL_PLAINTEXT leaves the connection unencrypted: use SASL_SSL, or set "
                    f"{PREFIX}ALLOW_UNENCRYPTED_SASL=true to accept that",
                )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """The settings from `ACCESSDRIFT_KAFKA_*`; raises KafkaSecurityError naming the
        variable (never a secret's value)."""
        environ = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = environ.get(PREFIX + name, "").strip()
            return value or None

        def path(name: str) -> Path | None:
            value = get(name)
            return None if value is None else Path(value)

        allow = parse_switch(get("ALLOW_UNENCRYPTED_SASL") or "")
        if allow is None:
            raise KafkaSecurityError(PREFIX + "ALLOW_UNENCRYPTED_SASL", "write true or false")
        password: SecretStr | None = None
        if environ.get(PREFIX + "SASL_PASSWORD"):
            password = SecretStr(environ[PREFIX + "SASL_PASSWORD"])
        elif (password_file := path("SASL_PASSWORD_FILE")) is not None:
            try:
                password = SecretRef(file=password_file).read(environ)
            except ValueError as error:
                raise KafkaSecurityError(PREFIX + "SASL_PASSWORD_FILE", str(error)) from None
        fields: dict[str, Any] = {
            "protocol": (get("SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            "ca_file": path("CA_FILE"),
            "cert_file": path("CERT_FILE"),
            "key_file": path("KEY_FILE"),
            "sasl_mechanism": (get("SASL_MECHANISM") or "").upper() or None,
            "sasl_username": get("SASL_USERNAME"),
            "sasl_password": password,
            "allow_unencrypted_sasl": allow,
        }
        try:
            return cls(**fields)
        except ValidationError as error:
            first = error.errors()[0]
            if isinstance(first.get("ctx", {}).get("error"), KafkaSecurityError):
                raise first["ctx"]["error"] from None
            name = str(first["loc"][0]).upper() if first["loc"] else "SECURITY_PROTOCOL"
            name = {"PROTOCOL": "SECURITY_PROTOCOL"}.get(name, name)
            raise KafkaSecurityError(PREFIX + name, first["msg"]) from None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (server verification with host names, TLS 1.2 or newer), or None
        without TLS. Raises KafkaSecurityError naming a file that cannot be used."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(
                cafile=None if self.ca_file is None else str(self.ca_file)
            )
        except (OSError, ssl.SSLError) as error:
            raise KafkaSecurityError(PREFIX + "CA_FILE", _why(self.ca_file, error)) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            try:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as error:
                raise KafkaSecurityError(
                    PREFIX + "CERT_FILE", _why(self.cert_file, error)
                ) from None
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (producer, consumer, admin)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.sasl_password is not None
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return options

    def describe(self) -> str:
        """For a startup line: the protocol and mechanism, never a secret."""
        if self.sasl:
            return f"{self.protocol} ({self.sasl_mechanism} as {self.sasl_username})"
        return self.protocol


def _why(path: Path | None, error: Exception) -> str:
    reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
    return f"cannot use {path}: {reason}"
