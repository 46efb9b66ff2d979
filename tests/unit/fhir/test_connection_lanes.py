"""`ConnectionLanes` against a real HTTP server on loopback (uvicorn, in this process): as many
requests in flight as lanes, each lane one kept-alive connection, and a lane freed whatever
happens to its request (answered, failed, timed out, cancelled, a body streamed and closed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from cdsflow.fhir import ConnectionLanes
from cdsflow.fhir.connection_lanes import environment_proxy
from cdsflow.runtime.processes import free_port
from tests.support.held_ehr import BUNDLE, HeldEhr, held_ehr
from tests.support.polling import eventually


@pytest.fixture
async def server() -> AsyncIterator[tuple[HeldEhr, str]]:
    async with held_ehr() as served:
        yield served


@pytest.fixture
async def answering() -> AsyncIterator[tuple[HeldEhr, str]]:
    async with held_ehr(answering=True) as served:
        yield served


async def test_as_many_requests_in_flight_as_lanes_each_lane_one_kept_connection(
    server: tuple[HeldEhr, str],
) -> None:
    app, base_url = server
    lanes = ConnectionLanes(3)
    async with httpx.AsyncClient(transport=lanes, base_url=base_url, timeout=30) as http:
        calls = [asyncio.create_task(http.get(f"/Observation?n={n}")) for n in range(20)]
        await eventually(lambda: app.holds(3), what="three requests at the server")
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
    answering: tuple[HeldEhr, str],
) -> None:
    app, base_url = answering
    lanes = ConnectionLanes(2)
    async with httpx.AsyncClient(transport=lanes, timeout=30) as http:
        with pytest.raises(httpx.ConnectError):  # nobody listens there
            await http.get(f"http://127.0.0.1:{free_port()}/Patient/1")
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{base_url}/slow", timeout=0.2)
        waiting = asyncio.create_task(http.get(f"{base_url}/slow"))
        await eventually(lambda: app.holds(1), what="the request at the server")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert lanes.free == 2
        # and both lanes still answer
        answers = await asyncio.gather(*(http.get(f"{base_url}/Patient/{n}") for n in range(4)))
    assert [answer.status_code for answer in answers] == [200] * 4


async def test_a_streamed_body_holds_its_lane_until_closed(
    answering: tuple[HeldEhr, str],
) -> None:
    _, base_url = answering
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
