"""`cdsflow.service.EnvironmentProxies`: each request goes through the proxy the environment
sets for its URL, or straight to the server when `NO_PROXY` names its host, as httpx's own
client does. The proxy and the server are small loopback servers that record the request
line they got."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from cdsflow.service import EnvironmentProxies


class _Recorder:
    """A loopback HTTP server that answers every request 200 with who it is, and keeps each
    request line."""

    def __init__(self, name: bytes) -> None:
        self.name = name
        self.request_lines: list[str] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.request_lines.append((await reader.readline()).decode().strip())
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(self.name), self.name)
        )
        await writer.drain()
        writer.close()


@pytest.fixture(autouse=True)
def no_proxy_of_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the proxies a test sets."""
    for scheme in ("http", "https", "all", "no"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)


@contextlib.asynccontextmanager
async def _recording(name: bytes) -> AsyncIterator[_Recorder]:
    recorder = _Recorder(name)
    await recorder.start()
    try:
        yield recorder
    finally:
        await recorder.stop()


@pytest.fixture
async def proxy() -> AsyncIterator[_Recorder]:
    async with _recording(b"proxy") as recorder:
        yield recorder


@pytest.fixture
async def server() -> AsyncIterator[_Recorder]:
    async with _recording(b"server") as recorder:
        yield recorder


async def test_a_request_goes_through_the_environments_proxy_for_its_scheme(
    proxy: _Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")

    async with httpx.AsyncClient(transport=EnvironmentProxies()) as client:
        answer = await client.get("http://fhir.hospital.test/fhir/Patient/p-1")

    assert answer.text == "proxy"
    assert proxy.request_lines == ["GET http://fhir.hospital.test/fhir/Patient/p-1 HTTP/1.1"]


async def test_the_environment_is_read_once_per_host(
    proxy: _Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at every request (the listener reads the EHR per id-only notification): a proxy
    set after a host's first request is not taken for it, and is for a host not yet seen."""
    async with httpx.AsyncClient(transport=EnvironmentProxies()) as client:
        proxy_url = f"http://127.0.0.1:{proxy.port}"
        with pytest.raises(httpx.ConnectError):  # no such host, and no proxy yet
            await client.get("http://fhir.hospital.test/fhir/Patient/p-1")
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        with pytest.raises(httpx.ConnectError):  # still direct: decided at its first request
            await client.get("http://fhir.hospital.test/fhir/Patient/p-2")
        answer = await client.get("http://jwks.hospital.test/keys.json")

    assert answer.text == "proxy"
    assert proxy.request_lines == ["GET http://jwks.hospital.test/keys.json HTTP/1.1"]


async def test_a_host_that_no_proxy_names_is_reached_directly(
    proxy: _Recorder, server: _Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async with httpx.AsyncClient(transport=EnvironmentProxies()) as client:
        answer = await client.get(f"http://127.0.0.1:{server.port}/jwks.json")

    assert answer.text == "server"
    assert server.request_lines == ["GET /jwks.json HTTP/1.1"]
    assert proxy.request_lines == []


async def test_without_a_proxy_in_the_environment_every_request_is_direct(
    server: _Recorder,
) -> None:
    async with httpx.AsyncClient(transport=EnvironmentProxies()) as client:
        answers = [
            (await client.get(f"http://127.0.0.1:{server.port}/one")).text,
            (await client.get(f"http://127.0.0.1:{server.port}/two")).text,
        ]

    assert answers == ["server", "server"]
    assert server.request_lines == ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]
