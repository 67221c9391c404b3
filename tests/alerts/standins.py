"""Stand-in HTTP receivers for services with no local build (Splunk HEC, PagerDuty, a webhook).

A `StandIn` is a real aiohttp server on 127.0.0.1, in a thread of its own, that records every
request and answers as the test says: a status with headers, or a hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from accessdrift.streams.broker import free_port


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def json_lines(self) -> list[Any]:
        """HEC batches: JSON objects one after another."""
        decoder, text, at, out = json.JSONDecoder(), self.body.decode(), 0, []
        while at < len(text):
            while at < len(text) and text[at].isspace():
                at += 1
            if at < len(text):
                value, at = decoder.raw_decode(text, at)
                out.append(value)
        return out


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: {"text": "Success", "code": 0})
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    delay_s: float = 0.0


class StandIn:
    """Records requests; `respond(seen, index)` decides each answer (index counts requests to
    the same path)."""

    def __init__(self, respond: Callable[[Seen, int], Answer] | None = None) -> None:
        self.respond = respond or (lambda seen, index: Answer())
        self.seen: list[Seen] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stand-in server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def at(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        counts: dict[str, int] = {}

        async def handle(request: web.Request) -> web.StreamResponse:
            seen = Seen(request.method, request.path, dict(request.headers), await request.read())
            index = counts.get(seen.path, 0)
            counts[seen.path] = index + 1
            self.seen.append(seen)
            answer = self.respond(seen, index)
            if answer.hang:
                await asyncio.sleep(3600)
            await asyncio.sleep(answer.delay_s)
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)

        application = web.Application()
        application.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(application, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
