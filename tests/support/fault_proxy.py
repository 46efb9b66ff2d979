"""A fault-injecting HTTP proxy in front of a real FHIR server (SEKMET), for write-back tests.

It forwards every request to the upstream server unchanged, except that:
- the next transactions (POSTs to the FHIR base) are answered from `planned` faults, in order:
  each either answers instead of the server (`forward=False`: nothing reaches it) or after
  it (`forward=True`: the server did the write, but the client sees the fault, as when an
  answer is lost on the way back);
- while `outage` is set, every request is answered from `outage_answers`, in turn (by default
  503 without `Retry-After`).

It records when each transaction arrived, so a test can check the waits between tries, and
each transaction's body with when it arrived and was answered, and how many were in flight at
most. `transaction_delay_s` holds each transaction that long before it goes on, as an EHR's
latency would (the write-back's concurrency is shown through it).

Its answers name the proxy, not the server: the server's base URL in them (a searchset's
`next` link, a `fullUrl`, a `Location`) is rewritten to the proxy's, as a reverse proxy in
front of an EHR would, so that a client configured with the proxy's base follows the
server's paging (a FHIR client follows `next` links on its configured EHR only).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.asgi import serve_app

_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass(frozen=True)
class Fault:
    status: int
    retry_after: str | None = None
    issue_code: str = "transient"
    forward: bool = False  # True: the server gets (and does) the request first


@dataclass(frozen=True)
class Transaction:
    body: bytes
    arrived: float  # time.monotonic()
    answered: float


@dataclass
class FaultInjectingProxy:
    upstream_origin: str  # e.g. http://127.0.0.1:8080 (no path)
    fhir_path: str = "/fhir"
    planned: collections.deque[Fault] = field(default_factory=collections.deque)
    outage: bool = False
    outage_answers: tuple[Fault, ...] = (Fault(503),)
    outage_answered: int = 0
    transaction_arrivals: list[float] = field(default_factory=list)
    transaction_delay_s: float = 0.0
    transactions: list[Transaction] = field(default_factory=list)
    transactions_in_flight: int = 0
    most_transactions_in_flight: int = 0
    base_url: str = ""  # set once serving: the FHIR base as seen through the proxy

    def plan(self, *faults: Fault) -> None:
        self.planned.extend(faults)

    def app(self, http: httpx.AsyncClient) -> Starlette:
        async def forward(request: Request) -> Response:
            is_transaction = request.method == "POST" and request.url.path.rstrip("/") == (
                self.fhir_path
            )
            if not is_transaction:
                return await answer(request, is_transaction=False)
            arrived = time.monotonic()
            self.transaction_arrivals.append(arrived)
            self.transactions_in_flight += 1
            self.most_transactions_in_flight = max(
                self.most_transactions_in_flight, self.transactions_in_flight
            )
            try:
                await asyncio.sleep(self.transaction_delay_s)
                return await answer(request, is_transaction=True)
            finally:
                self.transactions_in_flight -= 1
                body = await request.body()
                self.transactions.append(Transaction(body, arrived, time.monotonic()))

        async def answer(request: Request, *, is_transaction: bool) -> Response:
            if self.outage:
                answer = self.outage_answers[self.outage_answered % len(self.outage_answers)]
                self.outage_answered += 1
                return _fault_answer(answer)
            fault = self.planned.popleft() if is_transaction and self.planned else None
            if fault is not None and not fault.forward:
                return _fault_answer(fault)
            upstream = await http.request(
                request.method,
                f"{self.upstream_origin}{request.url.path}",
                params=list(request.query_params.multi_items()),
                headers={k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP},
                content=await request.body(),
            )
            if fault is not None:
                return _fault_answer(fault)
            upstream_base = f"{self.upstream_origin}{self.fhir_path}"
            return Response(
                upstream.content.replace(upstream_base.encode(), self.base_url.encode()),
                status_code=upstream.status_code,
                headers={
                    k: v.replace(upstream_base, self.base_url)
                    for k, v in upstream.headers.items()
                    if k.lower() not in _HOP_BY_HOP
                },
            )

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", forward, methods=methods)])


def _fault_answer(fault: Fault) -> Response:
    body: dict[str, Any] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": fault.issue_code, "diagnostics": "injected"}],
    }
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    return JSONResponse(body, status_code=fault.status, headers=headers)


@contextlib.asynccontextmanager
async def fault_injecting_proxy(upstream_fhir_base: str) -> AsyncIterator[FaultInjectingProxy]:
    """Serve a proxy to `upstream_fhir_base` (e.g. SEKMET's `http://127.0.0.1:N/fhir`)."""
    parsed = httpx.URL(upstream_fhir_base)
    proxy = FaultInjectingProxy(
        upstream_origin=f"{parsed.scheme}://{parsed.netloc.decode()}",
        fhir_path=parsed.path.rstrip("/"),
    )
    async with (
        httpx.AsyncClient(timeout=30) as http,
        serve_app(proxy.app(http)) as proxy_url,
    ):
        proxy.base_url = f"{proxy_url}{proxy.fhir_path}"
        yield proxy
