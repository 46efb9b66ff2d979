"""An EHR stand-in on loopback HTTP whose answers a test holds back: it answers every request
with an empty searchset Bundle once `go` is set (`/slow` after 3 s, past the timeouts tests
set; `/large` with `LARGE`, 4 MiB, more than a client buffers unread), and counts what
reached it: the requests in flight (and the most at once), the client ports (one per
connection) and the `Authorization` headers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.types import Receive, Scope, Send

from tests.support.asgi import serve_app
from tests.support.polling import eventually

T = TypeVar("T")

BUNDLE = b'{"resourceType":"Bundle","type":"searchset","total":0,"entry":[]}'
LARGE = b" " * (4 << 20)


@dataclass
class HeldEhr:
    go: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    client_ports: set[int] = field(default_factory=set)
    authorizations: list[str] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.client_ports.add(scope["client"][1])
        self.authorizations += [v.decode() for k, v in scope["headers"] if k == b"authorization"]
        try:
            await (asyncio.sleep(3) if scope["path"] == "/slow" else self.go.wait())
            headers = [(b"content-type", b"application/fhir+json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            body = LARGE if scope["path"] == "/large" else BUNDLE
            await send({"type": "http.response.body", "body": body})
        finally:
            self.in_flight -= 1

    async def holds(self, count: int) -> bool:
        """Whether `count` requests (at least) are in flight at it now."""
        return self.in_flight >= count


@contextlib.asynccontextmanager
async def held_ehr(*, answering: bool = False) -> AsyncIterator[tuple[HeldEhr, str]]:
    """The stand-in and its base URL while it serves; `answering`: `go` set from the start."""
    ehr = HeldEhr()
    if answering:
        ehr.go.set()
    async with serve_app(ehr) as base_url:
        yield ehr, base_url


async def answered_while_held(ehr: HeldEhr, calls: Sequence[Awaitable[T]], at_once: int) -> list[T]:
    """The calls' results, the calls started at once and held at the EHR until exactly
    `at_once` of them are there (the others waiting for a connection, not at the EHR)."""
    ehr.go.clear()
    started = [asyncio.ensure_future(call) for call in calls]
    await eventually(lambda: ehr.holds(at_once), what=f"{at_once} requests at the EHR")
    await asyncio.sleep(0.2)  # no more than that come
    assert ehr.in_flight == at_once
    ehr.go.set()
    return await asyncio.gather(*started)
