"""Shared fixtures: a real embedded Kafka-protocol broker on loopback, started by the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from accessdrift.streams.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session, on a free loopback port; stopped at the end."""
    with EmbeddedBroker() as running:
        yield running
