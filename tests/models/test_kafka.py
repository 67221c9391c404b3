"""Kafka TLS and SASL settings: what is refused, what each client is given, and that no secret
reaches an error or a repr."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from accessdrift.models.kafka import KafkaSecurity, KafkaSecurityError
from accessdrift.streams.worker import faust_credentials

P = "ACCESSDRIFT_KAFKA_"
PASSWORD = "pw-7c1d9e0f"


def _sasl(protocol: str, mechanism: str = "SCRAM-SHA-512", **extra: str) -> dict[str, str]:
    return {
        P + "SECURITY_PROTOCOL": protocol,
        P + "SASL_MECHANISM": mechanism,
        P + "SASL_USERNAME": "accessdrift",
        P + "SASL_PASSWORD": PASSWORD,
        **extra,
    }


def test_without_settings_a_client_speaks_plaintext() -> None:
    security = KafkaSecurity.from_env({})
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(security) is None


def test_tls_verifies_the_server_and_its_host_name_by_default() -> None:
    context = KafkaSecurity.from_env({P + "SECURITY_PROTOCOL": "ssl"}).ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_over_tls_gives_every_client_the_mechanism_and_credentials(mechanism: str) -> None:
    security = KafkaSecurity.from_env(_sasl("SASL_SSL", mechanism))
    options = security.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "accessdrift",
        PASSWORD,
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == mechanism


def test_unencrypted_sasl_is_refused_unless_explicitly_allowed() -> None:
    with pytest.raises(KafkaSecurityError, match="ALLOW_UNENCRYPTED_SASL=true") as refused:
        KafkaSecurity.from_env(_sasl("SASL_PLAINTEXT"))
    assert refused.value.field == P + "SECURITY_PROTOCOL"
    allowed = KafkaSecurity.from_env(_sasl("SASL_PLAINTEXT", **{P + "ALLOW_UNENCRYPTED_SASL": "1"}))
    assert allowed.client_options()["security_protocol"] == "SASL_PLAINTEXT"
    assert "ssl_context" not in allowed.client_options()
    credentials = faust_credentials(allowed)
    assert credentials is not None
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_plain_is_never_sent_without_tls_even_when_unencrypted_sasl_is_allowed() -> None:
    with pytest.raises(KafkaSecurityError, match="PLAIN sends the password in clear text"):
        KafkaSecurity.from_env(
            _sasl("SASL_PLAINTEXT", "PLAIN", **{P + "ALLOW_UNENCRYPTED_SASL": "true"})
        )


@pytest.mark.parametrize(
    ("environ", "variable", "says"),
    [
        ({P + "SECURITY_PROTOCOL": "TLS"}, "SECURITY_PROTOCOL", "PLAINTEXT"),
        ({P + "CA_FILE": "/ca.pem"}, "CA_FILE", "has no TLS"),
        ({P + "SECURITY_PROTOCOL": "SSL", P + "CERT_FILE": "/c.pem"}, "CERT_FILE", "KEY_FILE"),
        ({P + "SASL_USERNAME": "x"}, "SASL_MECHANISM", "use SASL_SSL"),
        ({P + "SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_MECHANISM", "needs SASL_MECHANISM"),
        (_sasl("SASL_SSL", "GSSAPI"), "SASL_MECHANISM", "SCRAM-SHA-256"),
        ({P + "ALLOW_UNENCRYPTED_SASL": "maybe"}, "ALLOW_UNENCRYPTED_SASL", "true or false"),
    ],
)
def test_a_setting_that_cannot_be_used_names_its_variable(
    environ: dict[str, str], variable: str, says: str
) -> None:
    with pytest.raises(KafkaSecurityError) as refused:
        KafkaSecurity.from_env(environ)
    assert refused.value.field == P + variable
    assert says in str(refused.value)


def test_the_password_can_come_from_a_file_and_is_never_shown(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text(PASSWORD + "\n")
    environ = _sasl("SASL_SSL")
    del environ[P + "SASL_PASSWORD"]
    security = KafkaSecurity.from_env({**environ, P + "SASL_PASSWORD_FILE": str(secret)})
    assert security.client_options()["sasl_plain_password"] == PASSWORD
    assert PASSWORD not in repr(security)
    assert PASSWORD not in security.describe()
    assert PASSWORD not in repr(faust_credentials(security))
    with pytest.raises(KafkaSecurityError) as refused:
        KafkaSecurity.from_env({**environ, P + "SASL_PASSWORD_FILE": str(tmp_path / "missing")})
    assert refused.value.field == P + "SASL_PASSWORD_FILE"
    assert "cannot read" in str(refused.value)


def test_a_ca_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    for path in (tmp_path / "missing.pem", tmp_path / "ca.pem"):
        security = KafkaSecurity.from_env(
            {P + "SECURITY_PROTOCOL": "SSL", P + "CA_FILE": str(path)}
        )
        with pytest.raises(KafkaSecurityError, match=f"cannot use {path}") as refused:
            security.ssl_context()
        assert refused.value.field == P + "CA_FILE"
