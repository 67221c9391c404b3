"""OpenID RISC 1.0 event types onto the contract: one mapping per event type, here and only here.

- `account-disabled` → a partial `identity.status` `suspended`;
- `account-enabled` → `active`;
- `account-purged` → `terminated`.

Each says nothing of role or owner, so each is a partial update: the identity keeps both.
`credential-compromise` is acknowledged and counted but maps to nothing: the policy has no
trigger for a compromised credential yet (a time-boxed obligation to rotate it would be one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from accessdrift.models.events import IDENTITY_STATUS
from accessdrift.models.vocabulary import IdentityStatus
from accessdrift.streams.signals.caep import Mapper
from accessdrift.streams.signals.mapping import (
    Signal,
    base,
    event_subject,
    need_identity,
    subject_keys,
)
from accessdrift.streams.signals.sets import SecurityEvent
from accessdrift.streams.signals.settings import Transmitter

PREFIX: Final = "https://schemas.openid.net/secevent/risc/event-type/"


def _status(status: IdentityStatus) -> Mapper:
    def mapper(
        event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
    ) -> list[Signal]:
        subject = event_subject(body, event)
        identity_id = need_identity(subject_keys(subject, transmitter), event_type)
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

    return mapper


def _nothing(
    event: SecurityEvent, event_type: str, body: Mapping[str, Any], transmitter: Transmitter
) -> list[Signal]:
    return []


MAPPERS: Final[dict[str, Mapper]] = {
    PREFIX + "account-disabled": _status("suspended"),
    PREFIX + "account-enabled": _status("active"),
    PREFIX + "account-purged": _status("terminated"),
    PREFIX + "credential-compromise": _nothing,
}
