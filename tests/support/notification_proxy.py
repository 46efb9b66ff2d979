"""Between the EHR and the listener: a proxy for the EHR's notifications that loses some.

The EHR (SEKMET) is given the proxy's URL as the Subscription's endpoint; the proxy forwards
each notification to the listener at `listener_url` (read at each request, so it may be set
once the listener is known), except that:

- while `dropping` is set, it answers 503 to every notification (as a network failure
  would), so the EHR retries and at length gives up (SEKMET then sets the Subscription to
  `error`);
- a topic notification whose events all carry numbers in `lost_event_numbers` is answered
  200 and not forwarded: lost on the way. The EHR takes it as delivered and goes on with the
  next one, so the listener sees only a gap in the event numbers (what an EHR that gives up
  on one notification and keeps the Subscription active looks like).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_FORWARDED_HEADERS = {"authorization", "content-type", "traceparent"}


@dataclass
class DroppingProxy:
    listener_url: str  # the listener's origin (`http://127.0.0.1:P`); the path is kept
    dropping: bool = False
    dropped: int = 0  # notifications answered 503 while `dropping`
    lost_event_numbers: set[int] = field(default_factory=set)
    lost: list[int] = field(default_factory=list)  # the event numbers lost, as they came
    forwarded: int = 0

    def lose(self, event_numbers: Iterable[int]) -> None:
        """Lose the notifications of these event numbers (answered 200, not forwarded)."""
        self.lost_event_numbers.update(event_numbers)

    def app(self, http: httpx.AsyncClient) -> Starlette:
        async def forward(request: Request) -> Response:
            if self.dropping:
                self.dropped += 1
                return Response(status_code=503)
            body = await request.body()
            numbers = event_numbers(body)
            if numbers and set(numbers) <= self.lost_event_numbers:
                self.lost.extend(numbers)
                return Response(status_code=200)
            answer = await http.request(
                request.method,
                self.listener_url + request.url.path,
                content=body,
                headers={
                    k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_HEADERS
                },
            )
            self.forwarded += 1
            return Response(
                answer.content, answer.status_code, {"content-type": "application/json"}
            )

        return Starlette(routes=[Route("/{path:path}", forward, methods=["POST", "PUT"])])


def event_numbers(body: bytes) -> list[int]:
    """The event numbers of an R4 backport notification Bundle's events (none for anything
    else: a handshake, a heartbeat, a rest-hook resource, an empty ping)."""
    try:
        bundle: Any = json.loads(body) if body.strip() else None
        status = bundle["entry"][0]["resource"]
        return [
            int(part["valueString"])
            for parameter in status["parameter"]
            if parameter["name"] == "notification-event"
            for part in parameter["part"]
            if part["name"] == "event-number"
        ]
    except (ValueError, TypeError, KeyError, IndexError):
        return []
