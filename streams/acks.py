"""The faust application the worker runs: faust's, with one fix to how it acknowledges.

faust skips a message its stream takes while a rebalance is under way (flow control
suspended) or that was fetched in an earlier generation, and then acknowledges it like one it
processed ("we want to ack the filtered out message, otherwise the lag would increase",
`faust/streams.py`). The acknowledgement lands in the bookkeeping of the new assignment, whose
commit then moves past a message no agent ever saw: an inbox batch lost for good, since the
ingest consumer committed its input offsets once the batch was produced. (Seen in the rebalance
fault test under CPU starvation: inbox offset 109 of partition 3 delivered to no worker, a
leaver's session revocation missing, findings wrong.)

Here such a message is marked done without recording its offset: it is not committed, so the
partition's next owner reads it again from the last commit. A message processed just before a
rebalance and acknowledged during it is read again too, which the engine takes as a repeat.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import Message
from faust.types.transports import TransportT
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


class _Transport(driver.Transport):
    Consumer = _Consumer


class App(faust.App):
    """`faust.App` whose consumer never commits past a message it skipped."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
