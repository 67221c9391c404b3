"""Shared fixtures: a real embedded Kafka-protocol broker on loopback, started by the tests, and
a worker after a live scenario with its API token (tests/streams/api_scenario.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accessdrift.streams.broker import EmbeddedBroker
from tests.streams.api_scenario import scenario


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session, on a free loopback port; stopped at the end."""
    with EmbeddedBroker() as running:
        yield running


__all__ = ["broker", "scenario"]
