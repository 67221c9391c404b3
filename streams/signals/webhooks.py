"""Webhooks from MDM and HR tools: Standard Webhooks signatures, and each source's own JSON
mapped onto the contract by the declarative `fields` of its settings.

Signature (https://www.standardwebhooks.com): HMAC-SHA256 with the shared secret over
`<webhook-id>.<webhook-timestamp>.<body>`, the body's raw bytes as they arrived (never a
re-serialisation), base64 in `webhook-signature` as `v1,<signature>`, several separated by spaces
while a source rotates its secret. Any configured secret may match, compared in constant time; a
timestamp outside the tolerance is refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydantic import SecretStr

from accessdrift.models.clock import US_PER_S, format_us, timestamp_us
from accessdrift.models.errors import AccessdriftError
from accessdrift.models.events import DEVICE_POSTURE, IDENTITY_STATUS
from accessdrift.models.text import echo
from accessdrift.streams.signals.mapping import Signal
from accessdrift.streams.signals.settings import KEY_FIELD, FieldSpec, Webhook

SECRET_PREFIX: Final = "whsec_"
MAX_ID_CHARS: Final = 256


class WebhookError(AccessdriftError):
    """A webhook request refused: `reason` is a closed word for metrics, `message` for people,
    `status` the HTTP status to answer."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        self.reason = reason
        self.message = message
        self.status = status
        super().__init__(f"{reason}: {message}")


def secret_bytes(secret: SecretStr) -> bytes:
    """A Standard Webhooks secret (`whsec_` + base64) as the HMAC key; raises ValueError."""
    text = secret.get_secret_value()
    try:
        return base64.b64decode(text.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def sign(secret: bytes, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` value a sender computes (`v1,<base64>`)."""
    content = f"{webhook_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[bytes],
    tolerance_s: int,
    now_s: float,
) -> str:
    """The verified `webhook-id`; raises WebhookError (401 unsigned or wrong, 400 stale)."""
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and timestamp and signatures):
        raise WebhookError(
            "unsigned",
            "webhook-id, webhook-timestamp and webhook-signature headers are required",
            401,
        )
    if len(webhook_id) > MAX_ID_CHARS or not webhook_id.isprintable():
        raise WebhookError("invalid_request", "webhook-id is too long or not printable")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise WebhookError("invalid_request", "webhook-timestamp must be Unix seconds")
    if abs(now_s - int(timestamp)) > tolerance_s:
        raise WebhookError(
            "stale", f"webhook-timestamp is more than {tolerance_s} s from the receiver's clock"
        )
    expected = [sign(secret, webhook_id, int(timestamp), body) for secret in secrets]
    offered = [part for part in signatures.split(" ") if part.startswith("v1,")]
    # Every pair is compared, match or not, so the time taken says nothing of which matched.
    matched = False
    for candidate in offered[:8]:
        for wanted in expected:
            matched |= hmac.compare_digest(candidate.encode(), wanted.encode())
    if not matched:
        raise WebhookError("bad_signature", "no webhook-signature matches a configured secret", 401)
    return webhook_id


_MISSING: Final = object()


def _pointer(document: Any, pointer: str) -> Any:
    """RFC 6901: the value at `pointer`, or _MISSING."""
    node = document
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return _MISSING
    return node


def _value(spec: FieldSpec, document: Any, name: str) -> Any:
    if spec.pointer is None:
        return spec.value
    found = _pointer(document, spec.pointer)
    if found is _MISSING:
        return _MISSING
    if spec.values is not None:
        if not isinstance(found, str) or found not in spec.values:
            raise WebhookError(
                "unmapped",
                f"{name}: {echo(str(found))} at {spec.pointer} is not one of the mapped values "
                f"{sorted(spec.values)}",
            )
        return spec.values[found]
    return found


def _time(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        seconds = value / 1000 if value >= 10**11 else value
        return format_us(int(seconds * US_PER_S))
    if isinstance(value, str):
        try:
            return format_us(timestamp_us(value))
        except ValueError as error:
            raise WebhookError("invalid_request", f"occurred_at: {error}") from None
    raise WebhookError("invalid_request", "occurred_at: expected RFC 3339 text or Unix seconds")


def map_payload(webhook: Webhook, webhook_id: str, body: bytes) -> Signal:
    """The contract event a verified webhook body says, as its `fields` map it."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise WebhookError("invalid_request", "the body is not JSON") from None
    value: dict[str, Any] = {"event_id": f"{webhook.name}:{webhook_id}", "source": webhook.name}
    if webhook.stream in (IDENTITY_STATUS, DEVICE_POSTURE):
        # A webhook reports one change; what it does not carry stays as it was.
        value["update"] = "partial"
    for name in webhook.fields:
        spec = webhook.field(name)
        assert spec is not None
        found = _value(spec, document, name)
        if found is _MISSING:
            continue
        value[name] = _time(found) if name == "occurred_at" else found
    key_field = KEY_FIELD[webhook.stream]
    for required in (key_field, "occurred_at"):
        if required not in value:
            raise WebhookError("invalid_request", f"{required}: nothing where the mapping looks")
    key = value[key_field]
    if not isinstance(key, str):
        raise WebhookError("invalid_request", f"{key_field}: expected text")
    return Signal(webhook.stream, key, value)
