"""The HTTP guard: credentials in URLs, bodies, long targets and floods are refused; the rate
limiter's buckets refill and stay bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from accessdrift.streams.guard import BURST, MAX_TARGET_BYTES, RateLimiter, guard


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def test_a_client_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=2, burst=4, clock=clock)
    assert [limiter.admit("a") for _ in range(4)] == [0, 0, 0, 0]
    assert limiter.admit("a") == 0.5
    assert limiter.admit("b") == 0, "another client has its own bucket"
    clock.now_s += 0.5
    assert limiter.admit("a") == 0
    clock.now_s += 60
    assert [limiter.admit("a") for _ in range(4)] == [0, 0, 0, 0], "refilled up to the burst"
    assert limiter.admit("a") > 0


def test_the_limiter_forgets_the_least_recently_seen_client_beyond_its_bound() -> None:
    clock = Clock()
    limiter = RateLimiter(rate_per_s=1, burst=1, max_clients=2, clock=clock)
    limiter.admit("a")
    limiter.admit("b")
    assert limiter.admit("a") > 0  # a is now the most recently seen
    limiter.admit("c")  # forgets b
    assert limiter.admit("b") == 0, "b starts again with a full bucket"
    assert limiter.admit("a") == 0, "a was forgotten when b came back"


def _serve(limiter: RateLimiter, requests: list[dict[str, Any]]) -> list[tuple[int, Any, Any]]:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def go() -> list[tuple[int, Any, Any]]:
        application = web.Application(middlewares=[guard(limiter)], client_max_size=1024)
        application.router.add_get("/{tail:.*}", ok)
        application.router.add_post("/{tail:.*}", ok)
        answers = []
        async with TestClient(TestServer(application)) as client:
            for spec in requests:
                response = await client.request(spec.pop("method", "GET"), **spec)
                answers.append((response.status, await response.json(), response.headers))
        return answers

    return asyncio.run(go())


def test_credentials_in_the_query_string_are_refused_whatever_the_path() -> None:
    names = ["token", "access_token", "API_KEY", "apikey", "Authorization", "password"]
    answers = _serve(
        RateLimiter(),
        [{"path": f"/metrics?{name}=abc"} for name in names] + [{"path": "/findings?limit=5"}],
    )
    for status, body, _ in answers[:-1]:
        assert status == 400
        assert "Authorization: Bearer" in body["error"]
        assert "abc" not in body["error"]
    assert answers[-1][0] == 200, "other parameters are fine"


def test_bodies_and_long_targets_are_refused() -> None:
    answers = _serve(
        RateLimiter(),
        [
            {"method": "POST", "path": "/findings", "data": b"x" * 10},
            {"method": "POST", "path": "/findings", "data": b"x" * 100_000},
            {"path": "/identities/" + "a" * MAX_TARGET_BYTES},
        ],
    )
    assert [status for status, _, _ in answers] == [413, 413, 414]


def test_a_flood_gets_429_with_retry_after() -> None:
    answers = _serve(RateLimiter(rate_per_s=1, burst=BURST), [{"path": "/healthz"}] * 45)
    statuses = [status for status, _, _ in answers]
    assert statuses[: int(BURST)] == [200] * int(BURST)
    assert set(statuses[int(BURST) :]) == {429}
    _, body, headers = answers[-1]
    assert int(headers["Retry-After"]) >= 1
    assert body == {"error": "too many requests from this address: slow down"}
