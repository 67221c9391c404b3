"""The ingest settings file: what cannot work is refused at start, naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from accessdrift.streams.cli import main
from accessdrift.streams.signals.settings import IngestSettingsError, load_ingest_settings

TRANSMITTER = """
[[transmitters]]
name = "okta"
issuer = "https://idp.example.com/"
audience = "https://accessdrift.example.com/ssf/okta"
"""


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("", "", "nothing to receive"),
        (
            TRANSMITTER + 'subjects.identity = { email = "{email}" }',
            "transmitters[0]",
            "exactly one of jwks_file or jwks_url",
        ),
        (
            TRANSMITTER + 'jwks_file = "k.json"\nsubjects.identity = { email = "{sub}" }',
            "transmitters[0].subjects",
            "identity.email: a template names the subject's fields",
        ),
        (
            TRANSMITTER
            + 'jwks_file = "k.json"\nsubjects.identity = { email = "{email.__class__}" }',
            "transmitters[0].subjects",
            "found ['email.__class__']",
        ),
        (
            TRANSMITTER + 'jwks_file = "k.json"\nalgorithms = ["HS256"]\n'
            'subjects.identity = { email = "{email}" }',
            "transmitters[0].algorithms[0]",
            "Input should be 'RS256' or 'ES256'",
        ),
        (
            '[[webhooks]]\nname = "hr"\nstream = "identity.status"\nsecrets = [{ env = "S" }]\n'
            'fields.identity_id = "/id"\nfields.occurred_at = "/at"\nfields.posture = "/p"',
            "webhooks[0]",
            "fields ['posture'] are not part of identity.status",
        ),
        (
            '[[webhooks]]\nname = "hr"\nstream = "identity.status"\nsecrets = [{ env = "S" }]\n'
            'fields.identity_id = "/id"',
            "webhooks[0]",
            "fields.occurred_at is required",
        ),
        (
            '[[webhooks]]\nname = "hr"\nstream = "identity.status"\nsecrets = []\n'
            'fields.identity_id = "/id"\nfields.occurred_at = "/at"',
            "webhooks[0].secrets",
            "at least 1 item",
        ),
    ],
    ids=[
        "empty",
        "no-keys",
        "wrong-template-field",
        "attribute-access",
        "hmac-algorithm",
        "field-of-another-stream",
        "no-time",
        "no-secret",
    ],
)
def test_a_settings_file_that_cannot_work_is_refused_naming_the_field(
    tmp_path: Path, text: str, where: str, reason: str
) -> None:
    path = tmp_path / "ingest.toml"
    path.write_text(text)
    with pytest.raises(IngestSettingsError) as raised:
        load_ingest_settings(path)
    assert raised.value.field == where
    assert reason in raised.value.reason


def test_the_command_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACCESSDRIFT_INGEST_CONFIG", raising=False)
    assert main(["ingest"]) == 2
    assert "ingest needs --config FILE" in capsys.readouterr().err
    path = tmp_path / "ingest.toml"
    path.write_text('[listen]\nport = "eighty"\n')
    assert main(["ingest", "--config", str(path)]) == 2
    assert "ingest.toml: listen.port: Input should be a valid integer" in capsys.readouterr().err
