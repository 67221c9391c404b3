"""Keys made in the tests, and SETs signed (or forged) with them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.example.com/"
AUDIENCE = "https://accessdrift.example.com/ssf/idp"
NOW_S = 1_767_600_000
CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey

    @classmethod
    def make(cls) -> Keys:
        return cls(rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1()))

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        return {"keys": [{**rsa_jwk, "kid": "rsa-1", "use": "sig"}, {**ec_jwk, "kid": "ec-1"}]}

    def rsa_public_pem(self) -> bytes:
        return self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def claims(events: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW_S,
        "jti": "756E69717565206964656E746966696572",
        "events": events,
        **extra,
    }


def sign(keys: Keys, payload: dict[str, Any], alg: str = "RS256", kid: str = "rsa-1") -> bytes:
    key = keys.rsa if alg == "RS256" else keys.ec
    headers = {"typ": "secevent+jwt", "kid": kid}
    return jwt.encode(payload, key, algorithm=alg, headers=headers).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> bytes:
    """A compact JWS assembled by hand: `alg: none`, or HS256 keyed with whatever is given."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}".encode()
