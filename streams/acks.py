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
   then seeks them to their commits, rewinding the read offsets; but the rest of a fetch made
   before that seek is still handed on after it, from the old positions. Those records move the
   read offset past the commit again, so the records read again from the commit are dropped:
   lost where nothing had processed them (the stream skipped them while the flow was still
   suspended, 1 above), a commit stall where something had. And once the flow has resumed they
   are processed ahead of the records before them: a device mark handed on early let the
   identities' clock pass a device's enrolment not yet read, which opened a false joiner
   finding and missed a grant made after a termination (the rebalance fault test's one red run
   on a fresh clone). The short rebalance fault test fetches such records in about 1 run of 2.
   Here a record fetched before its partition was sought is not handed on (`getmany`), and one
   handed on already is not processed (`App.stale`: the drain loop's hand-over waits for the
   flow, so the record it holds during the seek reaches the agent after it): the seek put
   aiokafka's position back, so both are read again, in order, from there. The one record held
   during the seek leaves the read offset past the commit all the same; the records below it
   are read, not dropped (`_not_read_yet`: aiokafka hands on nothing below its position).
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
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

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
    #: Counts the seeks to the commits begun or ended (5 above; faust seeks an inbox partition
    #: no other way, and `_read_again`'s seek keeps what was handed on): a fetch remembers the
    #: count when it is made.
    _seeks: int
    #: The count at each partition's last seek to its commit.
    _sought_at: dict[TP, int]
    #: The count when each message handed on was fetched.
    _fetched_at: WeakKeyDictionary[Message, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._heads = {}
        self._seeks = 0
        self._sought_at = {}
        self._fetched_at = WeakKeyDictionary()

    def _sought(self, tps: Iterable[TP]) -> None:
        self._seeks += 1
        acks_enabled_for = self.app.topics.acks_enabled_for
        for tp in tps:
            if acks_enabled_for(tp.topic):  # the changelogs are faust's recovery's
                self._sought_at[tp] = self._seeks

    async def seek_to_committed(self) -> Mapping[TP, int]:
        # Counted before and after: a fetch made while the seek waits for the commits is stale.
        self._sought(self.assignment())
        offsets = await super().seek_to_committed()
        self._sought(offsets)
        return offsets

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
        fetched_at = self._seeks
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
            sought_at, fetched = self._sought_at, self._fetched_at
            for tp, record in self.scheduler.iterate(records):
                if not self.flow_active or self.app.consumer_generation_id != generation_id:
                    break
                if sought_at.get(tp, 0) > fetched_at:
                    continue  # from before the seek (5 above): read again from where it put it
                if (
                    active_partitions is None
                    or tp in active_partitions
                    or tp in self._buffered_partitions
                ):
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    handed[tp] = handed.get(tp, 0) + 1
                    self._not_read_yet(tp, int(record.offset))
                    message = to_message(tp, record)
                    fetched[message] = fetched_at
                    yield tp, message
        finally:
            if self.app.consumer_generation_id == generation_id:
                await self._read_again(records, handed, fetched_at)

    def _not_read_yet(self, tp: TP, offset: int) -> None:
        """Lets faust's drain loop take a record below the read offset (5 above)."""
        read = self._read_offset[tp]
        if read is not None and offset < read and self.app.topics.acks_enabled_for(tp.topic):
            log.info(
                "reading %s[%d] from offset %d, below the read offset %d left by a message "
                "fetched before the last seek",
                tp.topic,
                tp.partition,
                offset,
                read,
            )
            self._read_offset[tp] = offset

    def stale(self, message: Message) -> bool:
        """Whether the message's partition was sought since it was fetched (5 above)."""
        fetched_at = self._fetched_at.get(message)
        return fetched_at is not None and self._sought_at.get(message.tp, 0) > fetched_at

    async def _read_again(
        self, records: Mapping[TP, list[Any]], handed: dict[TP, int], fetched_at: int
    ) -> None:
        for tp, fetched in records.items():
            count = handed.get(tp, 0)
            if (
                count >= len(fetched)
                or self._sought_at.get(tp, 0) > fetched_at
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
        if (
            message.generation_id != app.consumer_generation_id
            or not app.flow_control.is_active()
            or self.stale(message)
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

    def stale(self, message: Message) -> bool:
        """Whether an agent must pass the message by: its partition was sought back since it
        was fetched, so it is read again from there (item 5 of this module)."""
        consumer: Any = self.consumer
        return bool(consumer.stale(message))

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return _FlowControl(self)
