"""Unit tests of the worker's offset bookkeeping (`streams/acks.py`): no commit past a message
no agent processed. The fault tests show it end to end; these pin each rule."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

import pytest
from aiokafka.errors import KafkaTimeoutError
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP
from mode.utils.queues import FlowControlQueue

from accessdrift.streams.acks import _Consumer, _FlowControl

#: faust's round-robin over partitions (its stubs call the class abstract).
SCHEDULING: Any = DefaultSchedulingStrategy
INBOX = TP("app.identity-inbox", 2)
CHANGELOG = TP("app-identities-changelog", 2)


def consumer(committed: int | None, generation: int = 4, flowing: bool = True) -> Any:
    """A consumer with just the state these rules read (faust's own set-up needs a broker)."""
    c: Any = object.__new__(_Consumer)
    c._acked = defaultdict(list)
    c._acked_index = defaultdict(set)
    c._committed_offset = defaultdict(lambda: None)
    c._committed_offset[INBOX] = committed
    c._heads = {}
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


def test_a_message_read_again_while_its_commit_was_on_its_way_does_not_hold_the_commit() -> None:
    """The crash-loop fault test at soak length: the inbox commits stuck for good behind
    offsets acknowledged a second time below the committed offset."""
    c = consumer(committed=180)
    for offset in range(180, 186):
        assert c.ack(Message(offset))
    assert c._new_offset(INBOX) == 186
    assert c.ack(Message(184)), "read again before the commit of 186 is done"
    c._committed_offset[INBOX] = 186
    for offset in (186, 187):
        assert c.ack(Message(offset))
    assert c._new_offset(INBOX) == 188
    assert c._acked[INBOX] == []
    assert c._acked_index[INBOX] == set()


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


def test_a_partition_without_a_commit_waits_for_its_earliest_offset() -> None:
    """faust commits 8 here, over the batch at offset 0 (seen in the fault tests)."""
    c = consumer(committed=None)
    acknowledge(c, 1, 2, 3, 4, 5, 6, 7)
    assert c._new_offset(INBOX) is None, "the head is not known: no commit"
    c._heads[INBOX] = 0
    assert c._new_offset(INBOX) is None
    acknowledge(c, 0)
    assert c._new_offset(INBOX) == 8


def test_the_heads_are_the_earliest_offsets_of_the_inbox_partitions_without_a_commit() -> None:
    c = consumer(committed=None)
    other = TP(INBOX.topic, 3)
    c._committed_offset[other] = 40
    c._read_offset = defaultdict(lambda: None)
    asked: list[tuple[TP, ...]] = []

    async def seek_to_committed() -> dict[TP, int | None]:
        return {INBOX: None, other: 40, CHANGELOG: None}

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        asked.append(tps)
        return dict.fromkeys(tps, 5)

    c.seek_to_committed = seek_to_committed
    c.earliest_offsets = earliest_offsets
    c.assignment = lambda: {INBOX, other, CHANGELOG}
    asyncio.run(c.perform_seek())
    assert asked == [(INBOX,)], "only inbox partitions with no commit are looked up"
    assert c._heads == {INBOX: 5}

    async def unreachable(*tps: TP) -> dict[TP, int]:
        raise KafkaTimeoutError()

    c.earliest_offsets = unreachable
    asyncio.run(c.perform_seek())
    assert c._heads == {}, "an old head is not kept"
    acknowledge(c, 5)
    assert c._new_offset(INBOX) is None


@dataclass(frozen=True)
class Record:
    offset: int


class Fetching:
    """A consumer whose next fetch returns `records`, with what getmany reads stubbed."""

    def __init__(self, records: dict[TP, list[Record]], active: set[TP] | None = None) -> None:
        c: Any = consumer(committed=None)
        c._stopped = asyncio.Event()
        c._crashed = asyncio.Event()
        c.flow_active = True
        c.scheduler = SCHEDULING()
        c._buffered_partitions = set()
        c._to_message = lambda tp, record: record
        c.highwater = lambda tp: 100
        c.app.monitor = SimpleNamespace(track_tp_end_offset=lambda tp, offset: None)
        c.assignment = lambda: set(records)
        c._read_offset = defaultdict(lambda: None)
        self.sought: dict[TP, int] = {}
        self.dropped: list[tuple[TP, int]] = []

        async def wait_next_records(timeout: float) -> Any:
            return records, set(records) if active is None else active

        async def seek(tp: TP, offset: int) -> None:
            self.sought[tp] = offset

        c._wait_next_records = wait_next_records
        c.seek = seek
        self.consumer = c

    def take(self, stop_after: int | None = None, then: Any = None) -> list[tuple[TP, int]]:
        """Iterate one fetch as faust's drain loop does (it drops a record below the read
        offset, and sets the read offset once a message is handed on); after `stop_after`
        messages, `then`."""
        read_offset = self.consumer._read_offset

        async def go() -> list[tuple[TP, int]]:
            taken: list[tuple[TP, int]] = []
            async for tp, record in self.consumer.getmany(1.0):
                if read_offset[tp] is not None and record.offset < read_offset[tp]:
                    self.dropped.append((tp, record.offset))
                    continue
                taken.append((tp, record.offset))
                if len(taken) == stop_after:
                    then(self.consumer)
                read_offset[tp] = record.offset
            return taken

        return asyncio.run(go())


OTHER = TP(INBOX.topic, 3)


def test_records_fetched_when_the_flow_stops_are_read_again_from_the_first_not_handed_on() -> None:
    """faust drops them with aiokafka's position past them; a partition with no commit was not
    sought back at all (the downtime fault test's lost batches)."""
    f = Fetching({INBOX: [Record(0), Record(1), Record(2)], OTHER: [Record(7)]})

    def stop_flow(c: Any) -> None:
        c.flow_active = False

    taken = f.take(stop_after=2, then=stop_flow)
    assert taken == [(INBOX, 0), (OTHER, 7)]
    assert f.sought == {INBOX: 1}


def test_records_of_a_partition_paused_since_the_fetch_are_read_again() -> None:
    f = Fetching({INBOX: [Record(4), Record(5)], OTHER: [Record(7)]}, active={OTHER})
    assert f.take() == [(OTHER, 7)]
    assert f.sought == {INBOX: 4}


def test_a_new_generation_starts_from_the_commits_not_from_a_rewind() -> None:
    f = Fetching({INBOX: [Record(0), Record(1)]})

    def rebalance(c: Any) -> None:
        c.app.consumer_generation_id += 1

    assert f.take(stop_after=1, then=rebalance) == [(INBOX, 0)]
    assert f.sought == {}


def test_a_fetch_while_the_flow_is_stopped_goes_back_to_the_commits_and_to_what_was_fetched() -> (
    None
):
    f = Fetching({INBOX: [Record(3)], OTHER: [Record(9)]})
    c = f.consumer
    c.flow_active = False
    c._committed_offset[OTHER] = 8
    seeks: list[str] = []

    async def perform_seek() -> None:
        seeks.append("committed")

    c.perform_seek = perform_seek
    assert f.take() == []
    assert seeks == ["committed"]
    assert f.sought == {INBOX: 3}, "the partition with a commit is left where faust put it"


def test_only_inbox_partitions_without_a_commit_are_read_again() -> None:
    """faust seeks the others itself (to the commit; changelogs in recovery): not undone."""
    f = Fetching({INBOX: [Record(3)], OTHER: [Record(9)], CHANGELOG: [Record(1)]}, active=set())
    f.consumer._committed_offset[OTHER] = 8
    assert f.take() == []
    assert f.sought == {INBOX: 3}


def test_records_below_a_read_offset_left_past_the_commit_are_read() -> None:
    """The records of a fetch handed on after the seek to the commit left the read offset at
    14; faust drops 10 to 13 when they are read again from the commit, and the commit waits for
    them (robinhood/faust#115; the rebalance fault test's commit stall)."""
    f = Fetching({INBOX: [Record(offset) for offset in range(10, 16)], CHANGELOG: [Record(3)]})
    c = f.consumer
    c._read_offset[INBOX] = 14
    c._read_offset[CHANGELOG] = 5
    assert f.take() == [(INBOX, offset) for offset in range(10, 16)]
    assert c._read_offset[INBOX] == 15
    assert f.dropped == [(CHANGELOG, 3)], "only inbox partitions: the changelogs are faust's"


def test_resuming_the_flow_keeps_what_the_agents_have_queued() -> None:
    """faust emptied the agents' queues on resume, after the partitions were resumed and had
    fetched into them (the downtime fault test's lost inbox batches)."""

    async def go() -> None:
        app: Any = SimpleNamespace(loop=asyncio.get_running_loop())
        app.tables = SimpleNamespace(changelog_queue=None)
        flow = _FlowControl(app)
        agent: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        changelog: FlowControlQueue[int] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        app.tables.changelog_queue = changelog
        flow.resume()
        agent.put_nowait(1)
        changelog.put_nowait(2)
        flow.resume()
        assert flow.is_active()
        assert agent.qsize() == 1, "kept"
        assert changelog.qsize() == 0, "faust's behaviour for the changelog queue"
        flow.suspend()
        flow.clear()
        assert agent.qsize() == 0, "a rebalance starting empties them"

    asyncio.run(go())
