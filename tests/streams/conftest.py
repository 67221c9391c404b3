"""Fixtures of the stream tests."""

from tests.streams.api_scenario import scenario

__all__ = ["scenario"]
