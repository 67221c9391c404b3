"""OpenID CAEP 1.0 event types onto the contract: one mapping per event type, here and only here.

- `session-revoked` → `entitlement.change`, kind `session`, `revoked`: the session the subject
  names, else `sessions_entitlement` (every session at the transmitter).
- `credential-change` → `entitlement.change`, kind `credential`: `create` grants, `revoke` and
  `delete` revoke; `update` changes no access and maps to nothing.
- `device-compliance-change` → a partial `device.posture` (`compliant` or `noncompliant`): the
  event names no users, so the device's binding stays as it was.
- `token-claims-change` → a partial `identity.status` with the role or the status, when the
  claims carry one (`role_claim`, `status_claim`); else nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from accessdrift.models.events import DEVICE_POSTURE, ENTITLEMENT_CHANGE, IDENTITY_STATUS
from accessdrift.models.text import echo
from accessdrift.streams.signals.mapping import (
    Signal,
    base,
    event_subject,
    need_identity,
    subject_keys,
)
from accessdrift.streams.signals.sets import SecurityEvent, SetError
from accessdrift.streams.signals.settings import Transmitter

PREFIX: Final = "https://schemas.openid.net/secevent/caep/event-type/"
Mapper = Callable[[SecurityEvent, str, Mapping[str, Any], Transmitter], list[Signal]]


def _session_revoked(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    subject = event_subject(body, event)
    identity_id = need_identity(subject_keys(subject, transmitter), event_type)
    session = subject.get("session") if subject is not None else None
    session_id = session.get("id") if isinstance(session, dict) else None
    entitlement = session_id if isinstance(session_id, str) and session_id else None
    return [
        base(
            ENTITLEMENT_CHANGE,
            "identity_id",
            identity_id,
            event,
            event_type,
            body,
            transmitter,
            system=transmitter.system_name,
            entitlement=entitlement or transmitter.sessions_entitlement,
            action="revoked",
            kind="session",
        )
    ]


_CREDENTIAL_ACTIONS: Final = {"create": "granted", "revoke": "revoked", "delete": "revoked"}


def _credential_change(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    change = body.get("change_type")
    credential = body.get("credential_type")
    if change not in (*_CREDENTIAL_ACTIONS, "update"):
        raise SetError("invalid_request", f"credential-change: change_type {echo(str(change))}")
    if not isinstance(credential, str) or not credential:
        raise SetError("invalid_request", "credential-change: credential_type is required")
    if change == "update":
        return []
    identity_id = need_identity(subject_keys(event_subject(body, event), transmitter), event_type)
    return [
        base(
            ENTITLEMENT_CHANGE,
            "identity_id",
            identity_id,
            event,
            event_type,
            body,
            transmitter,
            system=transmitter.system_name,
            entitlement=credential,
            action=_CREDENTIAL_ACTIONS[str(change)],
            kind="credential",
        )
    ]


_COMPLIANCE: Final = {"compliant": "compliant", "not-compliant": "noncompliant"}


def _device_compliance_change(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    status = body.get("current_status")
    if status not in _COMPLIANCE:
        raise SetError(
            "invalid_request",
            f"device-compliance-change: current_status {echo(str(status))} is not compliant or "
            "not-compliant",
        )
    device_id = subject_keys(event_subject(body, event), transmitter).device_id
    if device_id is None:
        raise SetError(
            "invalid_request",
            "device-compliance-change: the subject names no device this receiver maps; add a "
            "subjects.device template for its format",
        )
    return [
        base(
            DEVICE_POSTURE,
            "device_id",
            device_id,
            event,
            event_type,
            body,
            transmitter,
            update="partial",
            posture=_COMPLIANCE[str(status)],
        )
    ]


def _token_claims_change(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    claims = body.get("claims")
    if not isinstance(claims, dict):
        raise SetError("invalid_request", "token-claims-change: claims must be an object")
    fields: dict[str, Any] = {}
    if transmitter.role_claim is not None and transmitter.role_claim in claims:
        fields["role"] = claims[transmitter.role_claim]
    if transmitter.status_claim is not None and transmitter.status_claim in claims:
        fields["status"] = claims[transmitter.status_claim]
    if not fields:
        return []
    identity_id = need_identity(subject_keys(event_subject(body, event), transmitter), event_type)
    return [
        base(
            IDENTITY_STATUS,
            "identity_id",
            identity_id,
            event,
            event_type,
            body,
            transmitter,
            update="partial",
            **fields,
        )
    ]


MAPPERS: Final[dict[str, Mapper]] = {
    PREFIX + "session-revoked": _session_revoked,
    PREFIX + "credential-change": _credential_change,
    PREFIX + "device-compliance-change": _device_compliance_change,
    PREFIX + "token-claims-change": _token_claims_change,
}
