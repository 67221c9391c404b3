"""Unit tests of the worker's offset bookkeeping (`streams/acks.py`): no commit past a message
no agent processed. The fault tests show it end to end; these pin each rule."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

import pytest
from faust.types import TP

from accessdrift.streams.acks import _Consumer

INBOX = TP("app.identity-inbox", 2)
CHANGELOG = TP("app-identities-changelog", 2)


def consumer(committed: int | None, generation: int = 4, flowing: bool = True) -> Any:
    """A consumer with just the state these rules read (faust's own set-up needs a broker)."""
    c: Any = object.__new__(_Consumer)
    c._acked = defaultdict(list)
    c._acked_index = defaultdict(set)
    c._committed_offset = defaultdict(lambda: None)
    c._committed_offset[INBOX] = committed
    c._unacked_messages = WeakSet()
    c._waiting_for_ack = None
    c._n_acked = 0
    c.app = SimpleNamespace(
        consumer_generation_id=generation,
        flow_control=SimpleNamespace(is_active=lambda: flowing),
        topics=SimpleNamespace(acks_enabled_for=lambda topic: topic == INBOX.topic),
    )
    return c


@dataclass(eq=False)
class Message:
    """The fields of a faust message these rules read (hashable and weakly referable, as
    faust's are)."""

    offset: int
    generation_id: int = 4
    acked: bool = False
    tp: TP = INBOX
    topic: str = INBOX.topic


def acknowledge(c: Any, *offsets: int) -> None:
    for offset in offsets:
        c._acked[INBOX].append(offset)
        c._acked_index[INBOX].add(offset)


def test_the_commit_waits_for_the_message_at_the_committed_offset() -> None:
    """faust commits 13 here (faust-streaming/faust#606), over message 10."""
    c = consumer(committed=10)
    acknowledge(c, 11, 12)
    assert c._new_offset(INBOX) is None
    acknowledge(c, 10)
    assert c._new_offset(INBOX) == 13
    assert c._acked[INBOX] == []


def test_the_commit_stops_at_the_first_gap() -> None:
    c = consumer(committed=10)
    acknowledge(c, 12, 10, 11, 14)
    assert c._new_offset(INBOX) == 13
    assert c._acked[INBOX] == [14]
    assert c._acked_index[INBOX] == {14}


@pytest.mark.parametrize(("generation", "flowing"), [(3, True), (4, False)])
def test_a_message_skipped_in_a_rebalance_is_done_but_not_committable(
    generation: int, flowing: bool
) -> None:
    c = consumer(committed=10, flowing=flowing)
    skipped = Message(10, generation)
    assert c.ack(skipped) is False
    assert skipped.acked
    assert c._acked[INBOX] == []
    if flowing:
        assert c.ack(Message(11)) is True
    assert c._new_offset(INBOX) is None, "never past the skipped message"
