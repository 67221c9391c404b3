"""Security Event Tokens (RFC 8417) as RFC 8935 push delivery receives them: verified against
the transmitter's keys before anything in them is read.

The checks, in order, each refusing with the RFC 8935 error code a transmitter acts on:
the body is one compact JWS (`invalid_request`); `typ` is `secevent+jwt`, so an ID token or an
access token signed by the same issuer is not taken for a SET (`invalid_request`); `alg` is one
the transmitter's settings allow, asymmetric only (`none` and HS256 never: a public key must not
become an HMAC secret) and of the kind of the key `kid` names (`invalid_key`); the signature
(`invalid_key`); `iss` (`invalid_issuer`); `aud` (`invalid_audience`); `iat` within `max_age`
and not ahead of now (`invalid_request`); `jti` and `events` present (`invalid_request`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from accessdrift.models.errors import AccessdriftError
from accessdrift.models.text import echo
from accessdrift.streams.signals.settings import Transmitter

ErrorCode = Literal[
    "invalid_request",
    "invalid_key",
    "invalid_issuer",
    "invalid_audience",
    "authentication_failed",
    "access_denied",
]
#: How far ahead of the receiver's clock an `iat` may be (clocks drift).
CLOCK_SKEW_S: Final = 60
MAX_KEYS: Final = 100


class SetError(AccessdriftError):
    """A push the receiver refuses: `code` (RFC 8935 section 2.4) and a description the
    transmitter's operators can act on. Never retryable as sent."""

    def __init__(self, code: ErrorCode, description: str, status: int = 400) -> None:
        self.code = code
        self.description = description
        self.status = status
        super().__init__(f"{code}: {description}")


class UnknownKeyError(SetError):
    """The SET names a key the receiver does not hold: worth fetching the JWKS again once."""

    def __init__(self, kid: str | None) -> None:
        super().__init__("invalid_key", f"no key with kid {echo(kid or '(none)')} in the JWKS")


class KeySet:
    """A transmitter's public keys by `kid`, from a JWKS document (RFC 7517). Keys that are not
    for signatures, or of a type no allowed algorithm uses, are left out."""

    def __init__(self, document: bytes | str | Mapping[str, Any]) -> None:
        try:
            data = json.loads(document) if isinstance(document, (bytes, str)) else document
            entries = data["keys"]
            if not isinstance(entries, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise ValueError("not a JWKS document: expected an object with a keys list") from None
        self.keys: dict[str | None, Any] = {}
        for entry in entries[:MAX_KEYS]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
            if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
                self.keys[entry.get("kid")] = key
        if not self.keys:
            raise ValueError("the JWKS holds no RSA or EC public key for signatures")

    def find(self, kid: str | None) -> Any:
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        key = self.keys.get(kid)
        if key is None:
            raise UnknownKeyError(kid)
        return key


@dataclass(frozen=True)
class SecurityEvent:
    """A verified SET: who sent it, when, and its events by type URI."""

    jti: str
    issuer: str
    issued_at_s: int
    #: `toe`, the time of the event, when the transmitter gives one.
    toe_s: int | None
    #: The SET's own subject (SSF's top-level `sub_id`), if any.
    subject: Mapping[str, Any] | None
    events: Mapping[str, Mapping[str, Any]]


def _fits(algorithm: str, key: Any) -> bool:
    if algorithm == "RS256":
        return isinstance(key, rsa.RSAPublicKey)
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)


def verify(token: bytes, transmitter: Transmitter, keys: KeySet, now_s: float) -> SecurityEvent:
    """The SET in `token`, verified; raises SetError (UnknownKeyError for an unknown `kid`)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise SetError("invalid_request", "the body is not a compact JWS (a signed SET)") from None
    typ = str(header.get("typ", "")).lower().removeprefix("application/")
    if typ != "secevent+jwt":
        raise SetError("invalid_request", f"typ {echo(typ)} is not secevent+jwt: not a SET")
    algorithm = header.get("alg")
    if algorithm not in transmitter.algorithms:
        raise SetError(
            "invalid_key",
            f"alg {echo(str(algorithm))} is not accepted; sign with one of "
            f"{', '.join(transmitter.algorithms)}",
        )
    kid = header.get("kid")
    key = keys.find(kid if isinstance(kid, str) else None)
    if not _fits(algorithm, key):
        raise SetError("invalid_key", f"the key {echo(str(kid))} is not a key for {algorithm}")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=transmitter.audience,
            issuer=transmitter.issuer,
            options={"require": ["iss", "aud", "iat", "jti"], "verify_exp": True},
            leeway=CLOCK_SKEW_S,
        )
    except jwt.InvalidSignatureError:
        raise SetError("invalid_key", "the signature does not verify with the key") from None
    except jwt.InvalidIssuerError:
        raise SetError("invalid_issuer", f"iss is not {transmitter.issuer}") from None
    except jwt.InvalidAudienceError:
        raise SetError("invalid_audience", f"aud does not name {transmitter.audience}") from None
    except jwt.ImmatureSignatureError:
        raise SetError("invalid_request", "iat is ahead of the receiver's clock") from None
    except jwt.InvalidTokenError as error:
        raise SetError("invalid_request", f"not a valid SET: {echo(str(error))}") from None
    return _security_event(claims, transmitter, now_s)


def _security_event(
    claims: Mapping[str, Any], transmitter: Transmitter, now_s: float
) -> SecurityEvent:
    jti, iat = claims["jti"], claims["iat"]
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise SetError("invalid_request", "jti must be a string of 1 to 256 characters")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise SetError("invalid_request", "iat must be an integer NumericDate")
    if now_s - iat > transmitter.max_age_s:
        raise SetError(
            "invalid_request",
            f"iat is {int(now_s - iat)} s old, more than the {transmitter.max_age_s} s accepted",
        )
    if iat - now_s > CLOCK_SKEW_S:
        raise SetError("invalid_request", "iat is ahead of the receiver's clock")
    events = claims.get("events")
    if (
        not isinstance(events, dict)
        or not events
        or not all(isinstance(body, dict) for body in events.values())
    ):
        raise SetError("invalid_request", "events must be an object of event objects")
    toe = claims.get("toe")
    subject = claims.get("sub_id")
    return SecurityEvent(
        jti=jti,
        issuer=str(claims["iss"]),
        issued_at_s=iat,
        toe_s=toe if isinstance(toe, int) and not isinstance(toe, bool) else None,
        subject=subject if isinstance(subject, dict) else None,
        events=events,
    )
