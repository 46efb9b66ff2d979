"""`ConnectionLanes` against a real HTTP server on loopback (uvicorn, in this process): as many
requests in flight as lanes, each lane one kept-alive connection, and a lane freed whatever
happens to its request (answered, failed, timed out, cancelled, a body streamed and closed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind
from starlette.types import Receive, Scope, Send

from cdsflow.fhir import ConnectionLanes, EhrClient
from cdsflow.fhir.connection_lanes import environment_proxy
from cdsflow.runtime.processes import free_port
from tests.support.asgi import serve_app
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

BUNDLE = b'{"resourceType":"Bundle","type":"searchset","total":0,"entry":[]}'


@dataclass
class HeldServer:
    """Answers once `go` is set (`/slow` after 3 s, past every timeout here); counts requests
    in flight and the client ports (one per connection) it saw."""

    go: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    client_ports: set[int] = field(default_factory=set)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.client_ports.add(scope["client"][1])
        try:
            await (asyncio.sleep(3) if scope["path"] == "/slow" else self.go.wait())
            headers = [(b"content-type", b"application/fhir+json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": BUNDLE})
        finally:
            self.in_flight -= 1


async def at_server(app: HeldServer, count: int) -> bool:
    return app.in_flight >= count


@pytest.fixture
async def server() -> AsyncIterator[tuple[HeldServer, str]]:
    app = HeldServer()
    async with serve_app(app) as base_url:
        yield app, base_url


async def test_as_many_requests_in_flight_as_lanes_each_lane_one_kept_connection(
    server: tuple[HeldServer, str],
) -> None:
    app, base_url = server
    lanes = ConnectionLanes(3)
    async with httpx.AsyncClient(transport=lanes, base_url=base_url, timeout=30) as http:
        calls = [asyncio.create_task(http.get(f"/Observation?n={n}")) for n in range(20)]
        await eventually(lambda: at_server(app, 3), what="three requests at the server")
        await asyncio.sleep(0.2)  # the 17 others are waiting for a lane, not at the server
        assert (app.in_flight, lanes.free) == (3, 0)
        app.go.set()
        answers = await asyncio.gather(*calls)

    assert [answer.status_code for answer in answers] == [200] * 20
    assert all(answer.content == BUNDLE for answer in answers)
    assert app.most_in_flight == 3
    assert len(app.client_ports) == 3  # 20 requests over 3 kept-alive connections
    assert lanes.free == 3


async def test_a_lane_is_freed_when_its_request_fails_times_out_or_is_cancelled(
    server: tuple[HeldServer, str],
) -> None:
    app, base_url = server
    app.go.set()
    lanes = ConnectionLanes(2)
    async with httpx.AsyncClient(transport=lanes, timeout=30) as http:
        with pytest.raises(httpx.ConnectError):  # nobody listens there
            await http.get(f"http://127.0.0.1:{free_port()}/Patient/1")
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{base_url}/slow", timeout=0.2)
        waiting = asyncio.create_task(http.get(f"{base_url}/slow"))
        await eventually(lambda: at_server(app, 1), what="the request at the server")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert lanes.free == 2
        # and both lanes still answer
        answers = await asyncio.gather(*(http.get(f"{base_url}/Patient/{n}") for n in range(4)))
    assert [answer.status_code for answer in answers] == [200] * 4


async def test_a_streamed_body_holds_its_lane_until_closed(
    server: tuple[HeldServer, str],
) -> None:
    app, base_url = server
    app.go.set()
    lanes = ConnectionLanes(1)
    async with httpx.AsyncClient(transport=lanes, base_url=base_url, timeout=30) as http:
        async with http.stream("GET", "/Patient/1") as streamed:
            assert lanes.free == 0
            second = asyncio.create_task(http.get("/Patient/2"))
            await asyncio.sleep(0.2)
            assert not second.done()  # the only lane is still held by the first body
            assert await streamed.aread() == BUNDLE
        assert (await second).status_code == 200
        assert lanes.free == 1


async def test_the_ehr_client_over_lanes_keeps_one_client_span_per_request(
    server: tuple[HeldServer, str], pseudonym_key: str
) -> None:
    app, base_url = server
    app.go.set()
    with recording_telemetry("fhir-lanes", pseudonym_key) as (telemetry, spans):
        async with httpx.AsyncClient(transport=ConnectionLanes(4), timeout=30) as http:
            HTTPXClientInstrumentor.instrument_client(
                http, tracer_provider=telemetry.tracer_provider
            )
            ehr = EhrClient(base_url, http)
            await asyncio.gather(*(ehr.search("Observation", [("n", str(n))]) for n in range(6)))
        telemetry.tracer_provider.force_flush()
        clients = [span for span in spans.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert len(clients) == 6


def test_no_lanes_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one lane"):
        ConnectionLanes(0)


def test_the_environments_proxy_is_taken_for_the_ehrs_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert environment_proxy("https://ehr.example.org/fhir") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://egress.example.org:3128")
    assert environment_proxy("https://ehr.example.org/fhir") == "http://egress.example.org:3128"
    assert environment_proxy("http://ehr.example.org/fhir") is None
    monkeypatch.setenv("NO_PROXY", "example.org")
    assert environment_proxy("https://ehr.example.org/fhir") is None
    monkeypatch.delenv("NO_PROXY")
    lanes = ConnectionLanes.for_url("https://ehr.example.org/fhir", 2)
    assert lanes.lanes == 2
