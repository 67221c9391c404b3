"""The worker's HTTP API, on faust's web server.

Open to anyone who can reach the port (loopback unless configured otherwise):
`GET /healthz` (the process serves), `GET /readyz` (table recovery is complete: 503 before),
`GET /metrics` (Prometheus text).

Behind a bearer token (`Authorization: Bearer <token>`, compared in constant time; without a
valid one, 401 and no data; with no token configured, the API stays shut):
`GET /identities/{id}`: one identity's access picture, answered by the worker that owns its
partition (a request reaching another worker is forwarded there);
`GET /findings?status=open[&limit=N]`: the findings open now on this worker's partitions;
`GET /time-to-revoke`: per trigger, privileged access apart, the time-to-revoke histogram with
percentiles and the share met within the window, on this worker's partitions.

`GET /` is the status page (`streams/status.py`): static files holding no data, whose script
reads the three above with the token.

faust's own table and router pages, which would show table data to anyone, are switched off
(`build_app`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import faust
import msgspec
from faust.exceptions import SameNode
from faust.web.exceptions import ServiceUnavailable
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from pydantic import SecretStr

from accessdrift.models.findings import encode_record
from accessdrift.models.state import IdentityState
from accessdrift.models.text import json_safe
from accessdrift.streams.census import Census
from accessdrift.streams.picture import access_picture, encode_picture
from accessdrift.streams.status import SECURITY_HEADERS, STATIC_FILES, static_file, time_to_revoke

_JSON: Final = msgspec.json.Encoder()
_CONTENT_JSON: Final = "application/json"
DEFAULT_FINDINGS_LIMIT: Final = 1000
MAX_FINDINGS_LIMIT: Final = 100_000


def authorized(header: str | None, token: SecretStr | None) -> bool:
    """Whether an Authorization header carries the token (constant-time comparison)."""
    if token is None or header is None:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.get_secret_value().encode())


@dataclass
class Api:
    """What the API reads: the worker's registry, census, table and clocks."""

    app: faust.App
    token: SecretStr | None
    registry: CollectorRegistry
    census: Census
    #: The stored state of an identity (a read that changes nothing), and the clock of the
    #: partition it is in (NEVER before the first mark).
    state_of: Callable[[str], IdentityState | None]
    clock_of: Callable[[str], int]
    #: The identity-inbox partitions this worker owns now.
    owned: Callable[[], list[int]]
    #: The time-to-revoke histogram and ended-obligations counter, collected now.
    revocations: Callable[[], list[Metric]]

    def install(self) -> None:
        self._page("/healthz", self._healthz)
        self._page("/readyz", self._readyz)
        self._page("/metrics", self._metrics)
        self._page("/identities/{identity_id}", self._identity)
        self._page("/findings", self._findings)
        self._page("/time-to-revoke", self._time_to_revoke)
        for path, (name, content_type) in STATIC_FILES.items():
            self._static(path, static_file(name), content_type)

    def _static(self, path: str, body: bytes, content_type: str) -> None:
        # A content type with a charset parameter: aiohttp only takes it as a header.
        headers = {**SECURITY_HEADERS, "Content-Type": f"{content_type}; charset=utf-8"}

        async def serve(view: Any, request: Any) -> Any:
            return view.bytes(body, headers=headers)

        serve.__name__ = f"static_{path.strip('/').replace('.', '_') or 'index'}"
        self._page(path, serve)

    def _page(self, path: str, handler: Callable[..., Awaitable[Any]]) -> None:
        # faust makes a view class with the function as its `get`: a plain function, so that it
        # is bound to the view (whose response helpers the handlers use).
        async def get(view: Any, request: Any, **match: str) -> Any:
            return await handler(view, request, **match)

        get.__name__ = handler.__name__.lstrip("_")
        self.app.page(path)(get)

    @staticmethod
    def _json(view: Any, body: bytes, status: int = 200, **headers: str) -> Any:
        return view.bytes(body, content_type=_CONTENT_JSON, status=status, headers=headers)

    def _error(self, view: Any, status: int, message: str, **headers: str) -> Any:
        return self._json(view, _JSON.encode({"error": message}), status, **headers)

    def _denied(self, view: Any, request: Any) -> Any | None:
        if authorized(request.headers.get("Authorization"), self.token):
            return None
        message = (
            "the API is shut: start the worker with ACCESSDRIFT_API_TOKEN (or --api-token-file)"
            if self.token is None
            else "send Authorization: Bearer <the worker's API token>"
        )
        return self._error(view, 401, message, **{"WWW-Authenticate": 'Bearer realm="accessdrift"'})

    async def _healthz(self, view: Any, request: Any) -> Any:
        return self._json(view, b'{"status":"ok"}')

    async def _readyz(self, view: Any, request: Any) -> Any:
        app = self.app
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        if recovered and not app.rebalancing:
            return self._json(view, b'{"status":"ready"}')
        return self._json(view, b'{"status":"recovering"}', 503)

    async def _metrics(self, view: Any, request: Any) -> Any:
        # The exposition content type carries parameters, which aiohttp only takes as a header.
        body = generate_latest(self.registry)
        return view.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _identity(self, view: Any, request: Any, identity_id: str) -> Any:
        denied = self._denied(view, request)
        if denied is not None:
            return denied
        try:
            return await self.app.router.route_req(
                "identities", identity_id.encode(), view.web, request
            )
        except SameNode:
            pass  # this worker owns it
        except ServiceUnavailable:
            return self._error(view, 503, "partitions are being assigned; retry shortly")
        state = self.state_of(identity_id)
        if state is None:
            return self._error(view, 404, "no event has named this identity")
        return self._json(view, encode_picture(access_picture(state, self.clock_of(identity_id))))

    async def _time_to_revoke(self, view: Any, request: Any) -> Any:
        denied = self._denied(view, request)
        if denied is not None:
            return denied
        body = {"partitions": self.owned(), "triggers": time_to_revoke(self.revocations())}
        return self._json(view, _JSON.encode(body))

    async def _findings(self, view: Any, request: Any) -> Any:
        denied = self._denied(view, request)
        if denied is not None:
            return denied
        status = request.query.get("status", "open")
        if status != "open":
            return self._error(
                view, 400, "status must be open: resolved findings are on the findings topic"
            )
        try:
            limit = int(request.query.get("limit", DEFAULT_FINDINGS_LIMIT))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_FINDINGS_LIMIT:
            return self._error(view, 400, f"limit must be a number from 1 to {MAX_FINDINGS_LIMIT}")
        records = sorted(self.census.open.values(), key=lambda r: (r.detected_at_us, r.finding_id))
        body = {
            "partitions": self.owned(),
            "count": len(records),
            "truncated": len(records) > limit,
            "findings": [msgspec.Raw(encode_record(r)) for r in records[:limit]],
        }
        return self._json(view, json_safe(_JSON.encode(body)))
