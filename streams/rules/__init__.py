"""One rule per trigger, one file each: what opens it, what it obliges, by when, what meets it,
its severity and the sentences a person reads.

    leaver.py                 terminated: revoke everything
    suspension.py             suspended: revoke live credentials
    mover.py                  role change: revoke or re-approve privileged access from before
    device_untrusted.py       device lost, noncompliant or unenrolled: cut what relies on it
    owner_departed.py         a non-human identity's owner left: re-own or retire it
    joiner.py                 a human became active: a compliant device must follow
    grant_while_inactive.py   a grant to a suspended or terminated identity

`RULES` is in the order the engine consults them on each event (ends before opens, so that a
status event that ends one trigger and opens another reports the end first).
"""

from __future__ import annotations

from typing import Final

from accessdrift.models.vocabulary import Trigger
from accessdrift.streams.rules.base import Rule, StatusChanged
from accessdrift.streams.rules.device_untrusted import DeviceUntrusted
from accessdrift.streams.rules.grant_while_inactive import GrantWhileInactive
from accessdrift.streams.rules.joiner import Joiner
from accessdrift.streams.rules.leaver import Leaver
from accessdrift.streams.rules.mover import Mover
from accessdrift.streams.rules.owner_departed import OwnerDeparted
from accessdrift.streams.rules.suspension import Suspension

OWNER_DEPARTED: Final = OwnerDeparted()
RULES: Final[dict[Trigger, Rule]] = {
    rule.trigger: rule
    for rule in (
        Leaver(),
        Suspension(),
        GrantWhileInactive(),
        Joiner(),
        Mover(),
        DeviceUntrusted(),
        OWNER_DEPARTED,
    )
}

__all__ = ["OWNER_DEPARTED", "RULES", "Rule", "StatusChanged"]
