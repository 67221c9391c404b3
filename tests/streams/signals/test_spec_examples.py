"""The example SETs of OpenID CAEP 1.0 and RISC 1.0, as the specifications print them (signed
here with keys made in the test, since the specs print payloads), parse and map."""

from __future__ import annotations

import json
from typing import Any

import pytest

from accessdrift.models.events import decode_event
from accessdrift.streams.signals.receiver import MAPPERS
from accessdrift.streams.signals.sets import KeySet, verify
from accessdrift.streams.signals.settings import Transmitter
from tests.streams.signals.keys import CAEP, RISC, Keys, sign

KEYS = Keys.make()

CAEP_SESSION_REVOKED_COMPLEX = {
    "iss": "https://idp.example.com/123456789/",
    "jti": "24c63fb56e5a2d77a6b512616ca9fa24",
    "iat": 1615305159,
    "aud": "https://sp.example.com/caep",
    "txn": 8675309,
    "sub_id": {
        "format": "complex",
        "session": {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"},
        "user": {
            "format": "iss_sub",
            "iss": "https://idp.example.com/123456789/",
            "sub": "dMTlD|1600802906337.16|16008.16",
        },
        "tenant": {"format": "opaque", "id": "123456789"},
    },
    "events": {
        CAEP + "session-revoked": {
            "initiating_entity": "policy",
            "reason_admin": {"en": "Policy Violation: C076E82F"},
            "reason_user": {
                "en": "Landspeed violation.",
                "es-410": "Violación de velocidad terrestre.",
            },
            "event_timestamp": 1615304991643,
        }
    },
}
CAEP_TOKEN_CLAIMS_CHANGE = {
    "iss": "https://idp.example.com/987654321/",
    "jti": "9afce1e4e642b165fcaacdd0e7aa4903",
    "iat": 1615305159,
    "aud": "https://sp.example2.net/caep",
    "txn": 8675309,
    "sub_id": {"format": "email", "email": "user@example.com"},
    "events": {
        CAEP + "token-claims-change": {
            "event_timestamp": 1615304991643,
            "claims": {"role": "ro-admin"},
        }
    },
}
CAEP_CREDENTIAL_CHANGE = {
    "iss": "https://idp.example.com/3456789/",
    "jti": "07efd930f0977e4fcc1149a733ce7f78",
    "iat": 1615305159,
    "aud": "https://sp.example2.net/caep",
    "txn": 8675309,
    "sub_id": {
        "format": "iss_sub",
        "iss": "https://idp.example.com/3456789/",
        "sub": "jane.smith@example.com",
    },
    "events": {
        CAEP + "credential-change": {
            "credential_type": "fido2-roaming",
            "change_type": "create",
            "fido2_aaguid": "accced6a-63f5-490a-9eea-e59bc1896cfc",
            "friendly_name": "Jane's USB authenticator",
            "initiating_entity": "user",
            "reason_admin": {"en": "User self-enrollment"},
            "event_timestamp": 1615304991643,
        }
    },
}
CAEP_DEVICE_COMPLIANCE_CHANGE = {
    "iss": "https://idp.example.com/123456789/",
    "jti": "24c63fb56e5a2d77a6b512616ca9fa24",
    "iat": 1615305159,
    "aud": "https://sp.example.com/caep",
    "txn": 8675309,
    "sub_id": {
        "format": "complex",
        "device": {
            "format": "iss_sub",
            "iss": "https://idp.example.com/123456789/",
            "sub": "e9297990-14d2-42ec-a4a9-4036db86509a",
        },
        "tenant": {"format": "opaque", "id": "123456789"},
    },
    "events": {
        CAEP + "device-compliance-change": {
            "current_status": "not-compliant",
            "previous_status": "compliant",
            "initiating_entity": "policy",
            "reason_admin": {"en": "Location Policy Violation: C076E8A3"},
            "reason_user": {"en": "Device is no longer in a trusted location."},
            "event_timestamp": 1615304991643,
        }
    },
}
RISC_SUBJECT = {"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"}


def _risc(event: str, **body: Any) -> dict[str, Any]:
    return {
        "iss": "https://idp.example.com/",
        "jti": "756E69717565206964656E746966696572",
        "iat": 1508184845,
        "aud": "636C69656E745F6964",
        "events": {RISC + event: {"subject": RISC_SUBJECT, **body}},
    }


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        (
            CAEP_SESSION_REVOKED_COMPLEX,
            (
                "entitlement.change",
                {
                    "identity_id": "dMTlD|1600802906337.16|16008.16",
                    "entitlement": "dMTlD|1600802906337.16|16008.16",
                    "action": "revoked",
                    "kind": "session",
                    "occurred_at": "2021-03-09T15:49:51.643Z",
                },
            ),
        ),
        (
            CAEP_TOKEN_CLAIMS_CHANGE,
            (
                "identity.status",
                {"identity_id": "user@example.com", "role": "ro-admin", "update": "partial"},
            ),
        ),
        (
            CAEP_CREDENTIAL_CHANGE,
            (
                "entitlement.change",
                {
                    "identity_id": "jane.smith@example.com",
                    "entitlement": "fido2-roaming",
                    "action": "granted",
                    "kind": "credential",
                },
            ),
        ),
        (
            CAEP_DEVICE_COMPLIANCE_CHANGE,
            (
                "device.posture",
                {
                    "device_id": "e9297990-14d2-42ec-a4a9-4036db86509a",
                    "posture": "noncompliant",
                    "update": "partial",
                },
            ),
        ),
        (
            _risc("account-disabled", reason="hijacking"),
            (
                "identity.status",
                {
                    "identity_id": "7375626A656374",
                    "status": "suspended",
                    "occurred_at": "2017-10-16T20:14:05Z",
                },
            ),
        ),
        (
            _risc("account-enabled"),
            ("identity.status", {"identity_id": "7375626A656374", "status": "active"}),
        ),
        (
            _risc("account-purged"),
            ("identity.status", {"identity_id": "7375626A656374", "status": "terminated"}),
        ),
        (_risc("credential-compromise", credential_type="password"), None),
    ],
    ids=[
        "caep-session-revoked",
        "caep-token-claims-change",
        "caep-credential-change",
        "caep-device-compliance-change",
        "risc-account-disabled",
        "risc-account-enabled",
        "risc-account-purged",
        "risc-credential-compromise",
    ],
)
def test_the_specifications_examples_parse_and_map(
    example: dict[str, Any], expected: tuple[str, dict[str, Any]] | None
) -> None:
    transmitter = Transmitter.model_validate(
        {
            "name": "example",
            "issuer": example["iss"],
            "audience": example["aud"],
            "jwks_file": "jwks.json",
            "subjects": {
                "identity": {"iss_sub": "{sub}", "email": "{email}"},
                "device": {"iss_sub": "{sub}"},
            },
        }
    )
    event = verify(sign(KEYS, example), transmitter, KeySet(KEYS.jwks()), example["iat"] + 5)
    [(event_type, body)] = event.events.items()
    signals = MAPPERS[event_type](event, event_type, body, transmitter)
    if expected is None:
        assert signals == [], "acknowledged, mapped to nothing (no policy trigger for it)"
        return
    [signal] = signals
    stream, fields = expected
    assert signal.stream == stream
    assert signal.value.items() >= fields.items()
    decode_event(stream, json.dumps(signal.value))
