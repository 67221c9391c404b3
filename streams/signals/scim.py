"""SCIM events (RFC 9967) onto the contract: one mapping per event type, here and only here.

The subject is the resource (`sub_id` of format `scim`, `uri` `/Users/<id>` or `/Groups/<id>`).

Users, as partial `identity.status` updates:
- `prov:activate` → `active`, `prov:deactivate` → `suspended`, `prov:delete` → `terminated`;
- `prov:create:full`, `prov:put:full`: the `active` attribute of the representation in `data`;
- `prov:patch:full`: an operation that sets `active` (`path` `active`, or a `value` object
  holding it).

Groups, as `entitlement.change` of kind `group` in the transmitter's system, the entitlement
named by the group's id: members added by `prov:create:full`, `prov:put:full` or a `prov:patch:full`
`add` are granted; members removed by a `remove` (`path` `members` with a value list, or
`members[value eq "<id>"]`) are revoked. A member is mapped like a subject of format `scim`.

Notices (`:notice`) carry no data: the receiver would have to read the resource back from the
SCIM service provider, which it does not do, so they are acknowledged and map to nothing. So is
a `prov:delete` of a group (which names none of its members).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from accessdrift.models.events import ENTITLEMENT_CHANGE, IDENTITY_STATUS
from accessdrift.models.vocabulary import IdentityStatus
from accessdrift.streams.signals.caep import Mapper
from accessdrift.streams.signals.mapping import Signal, base, event_subject, subject_keys
from accessdrift.streams.signals.sets import SecurityEvent, SetError
from accessdrift.streams.signals.settings import Transmitter

PREFIX: Final = "urn:ietf:params:scim:event:"
_MEMBER_FILTER: Final = re.compile(r'^members\[value eq "([^"]+)"\]$')
MAX_MEMBERS: Final = 1000


def _resource(subject: Mapping[str, Any] | None) -> tuple[str, str]:
    """(`Users` or `Groups`, id) of the subject; raises SetError for anything else."""
    uri = subject.get("uri") if subject is not None else None
    if isinstance(uri, str):
        parts = uri.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] in ("Users", "Groups") and parts[-1]:
            return parts[-2], parts[-1]
    raise SetError(
        "invalid_request", "a SCIM event's sub_id needs a uri /Users/<id> or /Groups/<id>"
    )


def _status_signal(
    status: IdentityStatus,
    event: SecurityEvent,
    event_type: str,
    body: Mapping[str, Any],
    transmitter: Transmitter,
) -> list[Signal]:
    identity_id = subject_keys(event_subject(body, event), transmitter).identity_id
    if identity_id is None:
        raise SetError(
            "invalid_request", "the SCIM user maps to no identity: add subjects.identity.scim"
        )
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
            status=status,
        )
    ]


def _member_signals(
    action: str,
    members: Any,
    group_id: str,
    event: SecurityEvent,
    event_type: str,
    body: Mapping[str, Any],
    transmitter: Transmitter,
) -> list[Signal]:
    if not isinstance(members, list) or len(members) > MAX_MEMBERS:
        raise SetError("invalid_request", f"members must be a list of at most {MAX_MEMBERS}")
    signals = []
    for member in members:
        value = member.get("value") if isinstance(member, dict) else None
        if not isinstance(value, str) or not value:
            raise SetError("invalid_request", "a member needs its value (the user's id)")
        subject = {"format": "scim", "uri": f"/Users/{value}"}
        identity_id = subject_keys(subject, transmitter).identity_id
        if identity_id is None:
            raise SetError(
                "invalid_request", "a group member maps to no identity: add subjects.identity.scim"
            )
        signal = base(
            ENTITLEMENT_CHANGE,
            "identity_id",
            identity_id,
            event,
            event_type,
            body,
            transmitter,
            system=transmitter.system_name,
            entitlement=group_id,
            action=action,
            kind="group",
        )
        # One SET can add many members: each record gets its own event_id.
        event_id = f"{signal.value['event_id']}/{action}/{value}"
        signals.append(Signal(signal.stream, signal.key, {**signal.value, "event_id": event_id}))
    return signals


def _active(value: Any) -> IdentityStatus:
    if not isinstance(value, bool):
        raise SetError("invalid_request", "active must be true or false")
    return "active" if value else "suspended"


def _full(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    """`prov:create:full` and `prov:put:full`: the whole representation in `data`."""
    kind, resource_id = _resource(event_subject(body, event))
    data = body.get("data")
    if not isinstance(data, dict):
        raise SetError("invalid_request", "a :full event carries the resource in data")
    if kind == "Groups":
        members = data.get("members", [])
        return _member_signals(
            "granted", members, resource_id, event, event_type, body, transmitter
        )
    if "active" not in data:
        return []
    return _status_signal(_active(data["active"]), event, event_type, body, transmitter)


def _patch(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    """`prov:patch:full`: the PatchOp request (RFC 7644 section 3.5.2) in `data`."""
    kind, resource_id = _resource(event_subject(body, event))
    data = body.get("data")
    operations = data.get("Operations") if isinstance(data, dict) else None
    if not isinstance(operations, list):
        raise SetError("invalid_request", "a prov:patch:full event carries a PatchOp in data")
    signals: list[Signal] = []
    for operation in operations:
        if not isinstance(operation, dict):
            raise SetError("invalid_request", "each PatchOp operation must be an object")
        op = str(operation.get("op", "")).lower()
        path = operation.get("path")
        value = operation.get("value")
        if kind == "Groups":
            if op == "add" and path == "members":
                signals += _member_signals(
                    "granted", value, resource_id, event, event_type, body, transmitter
                )
            elif op == "remove" and path == "members":
                signals += _member_signals(
                    "revoked", value, resource_id, event, event_type, body, transmitter
                )
            elif op == "remove" and isinstance(path, str) and (found := _MEMBER_FILTER.match(path)):
                signals += _member_signals(
                    "revoked",
                    [{"value": found[1]}],
                    resource_id,
                    event,
                    event_type,
                    body,
                    transmitter,
                )
        elif op in ("add", "replace"):
            if path == "active":
                signals += _status_signal(_active(value), event, event_type, body, transmitter)
            elif path is None and isinstance(value, dict) and "active" in value:
                signals += _status_signal(
                    _active(value["active"]), event, event_type, body, transmitter
                )
    return signals


def _user_status(status: IdentityStatus) -> Mapper:
    def mapper(
        event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
    ) -> list[Signal]:
        kind, _ = _resource(event_subject(body, event))
        if kind == "Groups":
            return []
        return _status_signal(status, event, event_type, body, transmitter)

    return mapper


def _nothing(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    return []


MAPPERS: Final[dict[str, Mapper]] = {
    PREFIX + "prov:create:full": _full,
    PREFIX + "prov:put:full": _full,
    PREFIX + "prov:patch:full": _patch,
    PREFIX + "prov:create:notice": _nothing,
    PREFIX + "prov:put:notice": _nothing,
    PREFIX + "prov:patch:notice": _nothing,
    PREFIX + "prov:activate": _user_status("active"),
    PREFIX + "prov:deactivate": _user_status("suspended"),
    PREFIX + "prov:delete": _user_status("terminated"),
}


def scim_type(event_type: str) -> str:
    """RFC 9967 registers `urn:ietf:params:scim:event:...`; its drafts (and transmitters built
    on them) write `SCIM`. URN namespace-specific strings compare as registered, so both are
    taken."""
    lowered = event_type.lower()
    return PREFIX + event_type[len(PREFIX) :] if lowered.startswith(PREFIX) else event_type
