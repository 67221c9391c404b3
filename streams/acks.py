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
   start at the committed offset.

Not covered: faust keeps a committed offset of 0, or none yet, as unknown and then checks no
head at all (its own rule is kept there). Starting such partitions from their beginning, so the
head is known, made the downtime fault test publish false findings (cause not found yet).

A message processed just before a rebalance and acknowledged during it is read again too, which
the engine takes as a repeat.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message
from faust.types.transports import TransportT
from faust.utils.functional import consecutive_numbers
from mode.utils.futures import notify


class _Consumer(driver.Consumer):
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
        committed offset, or None while the message there is not acknowledged. (The inboxes are
        neither compacted nor transactional, so every offset is a message to process.)"""
        committed = self._committed_offset[tp]
        if committed is None:
            # Not known (faust keeps a committed 0, or none yet, so): faust's own rule.
            return super()._new_offset(tp)
        acked = self._acked[tp]
        if not acked:
            return None
        acked.sort()
        if acked[0] != committed:
            return None
        run = next(consecutive_numbers(acked))
        del acked[: len(run)]
        self._acked_index[tp].difference_update(run)
        return int(run[-1]) + 1


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """`faust.App` whose consumer never commits past a message no agent processed."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
