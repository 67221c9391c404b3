"""The guard in front of every HTTP endpoint accessdrift serves (the worker's API and the
delivery service's metrics and health): an aiohttp middleware. (The demo's stand-in receivers
play Splunk and PagerDuty on loopback; they take bodies and keep aiohttp's 1 MiB limit.)

- No credentials in URLs: a query parameter named like a token (`token`, `access_token`,
  `api_key`, ...) is refused with 400, even beside a valid header, because URLs are written to
  proxy logs, browser histories and Referer headers.
- Size: every endpoint is a GET, so a request with a body is refused with 413 (and aiohttp
  reads at most `MAX_BODY_BYTES` of one); a target longer than `MAX_TARGET_BYTES` gets 414.
  aiohttp itself refuses request and header lines over 8 KiB.
- Rate: a token bucket per client address (`RATE_PER_S`, bursts up to `BURST`) answers 429 with
  `Retry-After` beyond it, so a client hammering the API (or guessing tokens) cannot starve the
  worker. At most `MAX_CLIENTS` addresses are tracked; the least recently seen is forgotten.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Middleware

RATE_PER_S: Final = 20.0
BURST: Final = 40.0
MAX_CLIENTS: Final = 10_000
MAX_BODY_BYTES: Final = 1024
MAX_TARGET_BYTES: Final = 2048
#: Query parameter names that would carry a credential (compared in lower case).
CREDENTIAL_PARAMETERS: Final = frozenset(
    {"token", "access_token", "api_token", "apitoken", "api_key", "apikey", "key", "auth",
     "authorization", "bearer", "password", "secret"}
)  # fmt: skip

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RateLimiter:
    """Token buckets per client: `admit(client)` is 0 when the request may go ahead, else the
    seconds until it could."""

    def __init__(
        self,
        rate_per_s: float = RATE_PER_S,
        burst: float = BURST,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        #: client → (tokens left, when they were counted), least recently seen first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def admit(self, client: str) -> float:
        now = self._clock()
        tokens, since = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - since) * self.rate_per_s)
        wait_s = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait_s = (1 - tokens) / self.rate_per_s
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait_s


def _refuse(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def guard(limiter: RateLimiter, takes_body: bool = False) -> Middleware:
    """The middleware (give it to `web.Application(middlewares=[...])`). `takes_body`: for a
    service that receives (`accessdrift ingest`), whose application's `client_max_size` bounds
    a body instead."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        wait_s = limiter.admit(request.remote or "")
        if wait_s > 0:
            return _refuse(
                429,
                "too many requests from this address: slow down",
                **{"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        if len(request.raw_path) > MAX_TARGET_BYTES:
            return _refuse(414, f"the request target is longer than {MAX_TARGET_BYTES} bytes")
        if any(name.lower() in CREDENTIAL_PARAMETERS for name in request.query):
            return _refuse(
                400,
                "credentials in the URL are refused (URLs end up in logs): send "
                "Authorization: Bearer <token> instead",
            )
        if request.body_exists and not takes_body:
            return _refuse(413, "these endpoints take no request body")
        return await handler(request)

    return middleware


def application_options() -> dict[str, object]:
    """The guard as options of an aiohttp `Application` (faust's `web_application_options`)."""
    return {"middlewares": [guard(RateLimiter())], "client_max_size": MAX_BODY_BYTES}


def guarded_application() -> web.Application:
    """A new aiohttp application behind the guard."""
    return web.Application(middlewares=[guard(RateLimiter())], client_max_size=MAX_BODY_BYTES)
