"""Broker loss: the broker becomes unreachable (a loopback proxy the test controls drops every
connection and refuses new ones) for a while during the feed, then comes back. The worker does
not exit, reads everything (its input lag returns to zero), and its findings equal the truth."""

from __future__ import annotations

import time
from pathlib import Path

from accessdrift.streams.broker import EmbeddedBroker, free_port
from tests.faults import Rig, organisation, soak
from tests.proxy import CuttableProxy
from tests.streams.test_faults import _judge
from tests.workers import HEAVY

pytestmark = HEAVY


def test_a_broker_unreachable_for_a_while_loses_nothing(tmp_path: Path) -> None:
    org = organisation(int(soak(400, 3000)), 25)
    proxy_port = free_port()
    with (
        EmbeddedBroker(advertised=f"127.0.0.1:{proxy_port}") as broker,
        CuttableProxy(broker.port, proxy_port) as proxy,
    ):
        rig = Rig(broker, tmp_path, bootstrap=f"127.0.0.1:{proxy_port}")
        try:
            worker = rig.start()
            feed = rig.feed(org.events[: len(org.events) // 2], soak(8, 30))
            feed.join()
            proxy.cut()
            time.sleep(soak(15, 30))
            assert worker.process.poll() is None, "the worker waits for the broker"
            proxy.restore()
            rig.produce([*org.events[len(org.events) // 2 :], org.clock_event()])
            rig.consumed(240)
            _judge(rig, org, "broker loss")
            assert worker.process.poll() is None, "the worker is still the one that started"
        finally:
            rig.stop_all()
