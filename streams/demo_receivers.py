"""The receivers `accessdrift demo` starts in place of a SIEM and a pager: a Splunk HTTP Event
Collector endpoint and a PagerDuty Events API v2 endpoint on loopback. `accessdrift notify`
delivers to them exactly as it would to the real services; each prints one line per event it
accepts, so the demo shows findings reaching a SIEM format and a page."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from aiohttp import web

from accessdrift.models.text import printable
from accessdrift.streams.broker import LOOPBACK, free_port

HEC_PATH: Final = "/services/collector/event"
PAGERDUTY_PATH: Final = "/v2/enqueue"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _events(body: str) -> list[dict[str, Any]]:
    """The JSON objects of an HEC batch, one after another."""
    decoder, at, events = json.JSONDecoder(), 0, []
    while at < len(body):
        if body[at].isspace():
            at += 1
            continue
        event, at = decoder.raw_decode(body, at)
        events.append(event)
    return events


class DemoReceivers:
    """A stand-in SIEM (HEC, checking its token) and PagerDuty, printing what they accept."""

    def __init__(self, out: TextIO, hec_token: str) -> None:
        self._out = out
        self._hec_token = hec_token
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.siem_events = 0
        self.pages = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        application = web.Application()
        application.router.add_post(HEC_PATH, self._hec)
        application.router.add_post(PAGERDUTY_PATH, self._pagerduty)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _line(self, text: str) -> None:
        self._out.write(f"{_now()}  {text}\n")
        self._out.flush()

    async def _hec(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Splunk {self._hec_token}":
            return web.json_response({"text": "Invalid authorization", "code": 3}, status=401)
        try:
            events = _events(await request.text())
        except ValueError:
            return web.json_response({"text": "Invalid data format", "code": 6}, status=400)
        for event in events:
            ocsf = event.get("event", {})
            uid = str(ocsf.get("finding_info", {}).get("uid", ""))[:8]
            self._line(
                f"{'SIEM':<9} {'ocsf':<9} [{printable(uid)}]  "
                f"{printable(str(ocsf.get('class_name')))} {ocsf.get('class_uid')}, "
                f"activity {printable(str(ocsf.get('activity_name')))}, "
                f"severity_id {ocsf.get('severity_id')}, time {ocsf.get('time')}"
            )
            self.siem_events += 1
        return web.json_response({"text": "Success", "code": 0})

    async def _pagerduty(self, request: web.Request) -> web.Response:
        try:
            event = await request.json()
        except ValueError:
            return web.json_response({"status": "invalid event"}, status=400)
        action = str(event.get("event_action"))
        summary = event.get("payload", {}).get("summary", "")
        severity = event.get("payload", {}).get("severity", "")
        key = str(event.get("dedup_key", ""))
        if action == "resolve":
            summary = "the incident is resolved"
        shown = f"{action} {severity}".strip()
        self._line(
            f"{'PAGE':<9} {printable(shown):<9} [{printable(key[-8:])}]  {printable(summary, 160)}"
        )
        self.pages += 1
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )
