"""`ehr_connections` against a real HTTP server on loopback (uvicorn, in this process): at most
as many requests in flight as connections, each connection kept alive, and a connection
freed whatever happens to its request (answered, failed, timed out, cancelled, a body
streamed and closed unread), with httpx's errors for what went wrong."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from cdsflow.fhir import ehr_connections
from cdsflow.fhir.ehr_connections import environment_proxy
from cdsflow.runtime.processes import free_port
from tests.support.held_ehr import BUNDLE, HeldEhr, answered_while_held, held_ehr
from tests.support.polling import eventually


@pytest.fixture
async def server() -> AsyncIterator[tuple[HeldEhr, str]]:
    async with held_ehr() as served:
        yield served


@pytest.fixture
async def answering() -> AsyncIterator[tuple[HeldEhr, str]]:
    async with held_ehr(answering=True) as served:
        yield served


async def test_as_many_requests_in_flight_as_connections_each_kept_alive(
    server: tuple[HeldEhr, str],
) -> None:
    app, base_url = server
    transport = ehr_connections(base_url, 3)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as http:
        calls = [http.get(f"/Observation?n={n}") for n in range(20)]
        answers = await answered_while_held(app, calls, at_once=3)

    assert [answer.status_code for answer in answers] == [200] * 20
    assert all(answer.content == BUNDLE for answer in answers)
    assert app.most_in_flight == 3
    assert len(app.client_ports) == 3  # 20 requests over 3 kept-alive connections


async def test_a_connection_is_freed_when_its_request_fails_times_out_or_is_cancelled(
    answering: tuple[HeldEhr, str],
) -> None:
    app, base_url = answering
    transport = ehr_connections(base_url, 2)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=30) as http:
        with pytest.raises(httpx.TransportError):  # nobody listens there
            await http.get(f"http://127.0.0.1:{free_port()}/Patient/1")
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/slow", timeout=0.2)
        waiting = asyncio.create_task(http.get("/slow"))
        await eventually(lambda: app.holds(1), what="the request at the EHR")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # once the EHR is done with the abandoned request, two are at it at once again:
        # neither connection is still held by the requests above
        await eventually(lambda: _idle(app), timeout_s=10, what="the EHR done with /slow")
        calls = [http.get(f"/Patient/{n}") for n in range(4)]
        answers = await answered_while_held(app, calls, at_once=2)
    assert [answer.status_code for answer in answers] == [200] * 4


async def _idle(app: HeldEhr) -> bool:
    return app.in_flight == 0


async def test_a_body_closed_unread_frees_its_connection(
    answering: tuple[HeldEhr, str],
) -> None:
    _, base_url = answering
    transport = ehr_connections(base_url, 1)
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=5) as http:
        async with http.stream("GET", "/large") as streamed:
            assert streamed.status_code == 200
            second = asyncio.create_task(http.get("/Patient/2"))
            await asyncio.sleep(0.5)
            # a body larger than the client buffers holds the only connection while open
            assert not second.done()
        # closed unread: the connection is free for the waiting request
        assert (await second).content == BUNDLE


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request's head, then close without answering."""
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    writer.close()


async def test_a_refused_connection_and_a_hang_up_get_httpx_own_names() -> None:
    """Not `httpx.ConnectTimeout`, which httpx-aiohttp names both: nothing timed out."""
    hanging_up = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
    port = hanging_up.sockets[0].getsockname()[1]
    transport = ehr_connections(f"http://127.0.0.1:{port}", 1)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=10) as http:
            # a ConnectError is no TimeoutException, as the ConnectTimeout of before was
            with pytest.raises(httpx.ConnectError):  # nobody listens there
                await http.get(f"http://127.0.0.1:{free_port()}/Patient/1")
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"http://127.0.0.1:{port}/Patient/1")
    finally:
        hanging_up.close()
        await hanging_up.wait_closed()


def test_no_connection_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one connection"):
        ehr_connections("http://127.0.0.1:8080/fhir", 0)


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
    transport = ehr_connections("https://ehr.example.org/fhir", 2)
    assert getattr(transport, "proxy").url == httpx.URL("http://egress.example.org:3128")  # noqa: B009
