"""The faust application the worker runs: faust's, with its offset bookkeeping made safe.

A commit may never move past a message no agent processed: the ingest consumer committed its
input offsets once the inbox batch was produced, so an inbox batch committed unprocessed is lost
for good (a leaver's revocation never seen, a finding missed). faust 0.15 has these ways to do it:

1. It skips a message its stream takes while a rebalance is under way (flow control suspended)
   or that was fetched in an earlier generation, and then acknowledges it like one it processed
   ("we want to ack the filtered out message, otherwise the lag would increase",
   `faust/streams.py`). Seen in the rebalance fault test under CPU starvation: inbox offset 109
   of partition 3 delivered to no worker. Here such a message is marked done without recording
   its offset, so the partition's next owner, or this worker after its seek back to the last
   commit, reads it again.
2. Its commit takes the first run of consecutive acknowledged offsets, but accepts a run that
   starts one past the committed offset (faust-streaming/faust#606, still open): the message at
   the committed offset, skipped as in 1 or still in flight, is committed over. Here the run must
   start at the committed offset. A message read again while the commit of its offset is on
   its way is acknowledged again below the new committed offset: that is dropped from the books,
   not waited for (the crash-loop fault test at soak length had its inbox commits stuck for good).
3. A partition with no commit yet (or a committed 0, which faust keeps the same way) has no
   committed offset in faust's books, and then faust checks no head at all: the first run of
   acknowledged offsets is committed wherever it starts. Here the head of such a partition is
   where its consumer starts without a commit, its earliest offset (`auto_offset_reset` is
   faust's default, earliest), looked up when it is assigned.
4. It drops the records of a fetch once its flow stops or their partition is paused, with
   aiokafka's position past them, and seeks back only the partitions that have a commit, so a
   partition without one would never read them. Here such a partition is sought back to the
   first record not handed on (`getmany`).
   (Seen to fire in the fault tests only during a rebalance, before its seek to the commits,
   which sets every position again anyway.)
5. Its drain loop drops every record below the partition's read offset as one already read
   ("DROPPED MESSAGE ROFF", robinhood/faust#115). At the end of a rebalance faust resumes the
   inbox partitions with the consumer's flow running (its changelog recovery resumed it) and
   then seeks them to their commits, rewinding the read offsets; records fetched before that
   seek and handed on after it move the read offset on again, past the commit. The stream
   skips what it took before the flow resumed (1 above), so the records from the commit up to
   that read offset were read again only to be dropped, never acknowledged, and the commit
   waited for them until the next rebalance. Where they had been processed before the
   rebalance, that is a commit stall and nothing else, which fits the rebalance fault test's
   one stall at soak length (findings right, inbox commits stuck; no trace of that run); where
   not, a lost message. The short rebalance fault test shows 20-35 such records on three inbox
   partitions in 2 runs of 3. aiokafka hands on nothing below its position, so a record below
   faust's read offset is one to read: here the read offset of an inbox partition is put back
   to it (`getmany`).
6. Resuming the flow at the end of a rebalance empties the agents' queues, but faust resumes
   the inbox partitions before that and the consumer fetches into the queues meanwhile: those
   messages were dropped with aiokafka's position past them. Seen in the downtime fault test
   with per-offset logging: a restarted worker fetched and queued offsets 0-6 of every inbox
   partition, its agents processed offset 0 of one and went on at offsets 3 and 4; what was
   queued before (device signals, the first batch of identity changes) reached no agent,
   which cost identities their enrolment (false joiner findings) or their whole first day:
   the intermittent failure of the downtime and rebalance fault tests (one red CI run). Here
   resuming the flow leaves the agents' queues alone (`_FlowControl`).

A message processed just before a rebalance and acknowledged during it is read again too, which
the engine takes as a repeat.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import AsyncIterator, Mapping
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from faust.types.transports import TransportT
from faust.utils.functional import consecutive_numbers
from mode.utils.futures import notify
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)


class _Consumer(driver.Consumer):
    #: The earliest offset of each assigned partition that has no commit (3 above).
    _heads: dict[TP, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heads = {}

    async def perform_seek(self) -> None:
        await super().perform_seek()
        acks_enabled_for = self.app.topics.acks_enabled_for
        unknown = [
            tp
            for tp in self.assignment()
            if acks_enabled_for(tp.topic) and self._committed_offset[tp] is None
        ]
        self._heads = {}
        if not unknown:
            return
        try:
            earliest = await self.earliest_offsets(*unknown)
            self._heads = {tp: int(offset) for tp, offset in earliest.items()}
        except KafkaError as error:
            # Without its head a partition is not committed (see _new_offset) until its next
            # assignment looks again; it is processed all the same, and re-read if it moves.
            log.warning(
                "no earliest offsets for %d inbox partitions without a commit (%s); their "
                "offsets are not committed until the next rebalance",
                len(unknown),
                error,
            )

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """faust's, except that what it fetched and does not hand on is read again (4 above).

        faust drops the records of a fetch once its flow stops or whose partition it has paused
        since; aiokafka's position is already past them. faust seeks back to the committed
        offsets at its next fetch, but not a partition with no commit (3 above). Here each such
        inbox partition is sought back to its first record not handed on (where it was before
        the fetch) before anything later is read. faust seeks no such partition itself, so
        nothing it did is undone; the ones with a commit are faust's to seek back, the
        changelogs its recovery's. A change of generation is left to the new assignment."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        handed: dict[TP, int] = {}
        try:
            if not self.flow_active:
                # faust's own: back to the committed offsets (and the rewind below).
                try:
                    await self.perform_seek()
                except Exception as error:
                    self.log.warning(f"exception performing seek when flow not active {error}")
                return
            to_message = self._to_message
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    break
                if (
                    active_partitions is None
                    or tp in active_partitions
                    or tp in self._buffered_partitions
                ):
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    handed[tp] = handed.get(tp, 0) + 1
                    self._not_read_yet(tp, int(record.offset))
                    yield tp, to_message(tp, record)
        finally:
            if self.app.consumer_generation_id == generation_id:
                await self._read_again(records, handed)

    def _not_read_yet(self, tp: TP, offset: int) -> None:
        """Lets faust's drain loop take a record below the read offset (5 above): aiokafka
        hands on nothing below its position, so the read offset is stale, not the record."""
        read = self._read_offset[tp]
        if read is not None and offset < read and self.app.topics.acks_enabled_for(tp.topic):
            log.info(
                "reading %s[%d] from offset %d, below the read offset %d left by a message "
                "finished after the last seek",
                tp.topic,
                tp.partition,
                offset,
                read,
            )
            self._read_offset[tp] = offset

    async def _read_again(self, records: Mapping[TP, list[Any]], handed: dict[TP, int]) -> None:
        for tp, fetched in records.items():
            count = handed.get(tp, 0)
            if (
                count >= len(fetched)
                or self._committed_offset[tp] is not None
                or not self.app.topics.acks_enabled_for(tp.topic)
                or tp not in self.assignment()
            ):
                continue
            offset = int(fetched[count].offset)
            log.info(
                "reading %s[%d] again from offset %d (fetched, not processed)",
                tp.topic,
                tp.partition,
                offset,
            )
            await self.seek(tp, offset)

    def ack(self, message: Message) -> bool:
        app: Any = self.app
        if message.generation_id != app.consumer_generation_id or not (
            app.flow_control.is_active()
        ):
            # Done as far as waiting for it goes (a rebalance waits for every message it
            # started), but its offset is not one to commit.
            message.acked = True
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
            return False
        return super().ack(message)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit: one past the run of acknowledged offsets that starts at the
        head (the committed offset, or the earliest of a partition with none), or None while
        the message there is not acknowledged or the head is not known. (The inboxes are
        neither compacted nor transactional, so every offset is a message to process.)"""
        head = self._committed_offset[tp]
        if head is None:
            head = self._heads.get(tp)
            if head is None:
                return None
        acked = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        # A message read again while its offset's commit was on its way is acknowledged again
        # below the new head: already committed, and it would hold the commit back for good.
        done = bisect_left(acked, head)
        if done:
            self._acked_index[tp].difference_update(acked[:done])
            del acked[:done]
        if not acked or acked[0] != head:
            return None
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return int(run[-1]) + 1


class _Transport(driver.Transport):
    Consumer = _Consumer


class _FlowControl(FlowControlEvent):
    """faust's flow control into the agents' queues (6 above): resuming it does not empty them.

    faust resumes the inbox partitions and seeks them to their commits first, then resumes the
    flow, which emptied every queue: what was fetched meanwhile was dropped, with aiokafka's
    position past it. (faust-streaming/faust#253 ordered recovery so that nothing is fetched
    before the flow resumes; in 0.15's `on_recovery_completed` the consumer's flow is already
    running when the inbox partitions are resumed.) Nothing stale can be
    in those queues: the rebalance empties them when it starts (`clear`, kept), and a message of
    an earlier generation that gets in after is skipped by the stream. The tables' changelog
    queue is emptied on resume as faust does."""

    def __init__(self, app: faust.App) -> None:
        super().__init__(loop=app.loop)
        self._app = app

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()
        tables: Any = self._app.tables  # faust types it without its changelog queue
        tables.changelog_queue.clear()


class App(faust.App):
    """`faust.App` whose consumer never commits past a message no agent processed, and that
    drops nothing it fetched."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _FlowControl(self)
