"""How long the services keep an idle connection open (`http_keep_alive_s`): longer than the
clients in front of them, so that a client reusing a connection never finds it closed under it."""

from __future__ import annotations

import asyncio
import io
import socket
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from cdsflow.service import ServiceSettings
from tests.support.asgi import serve_app

REQUEST = b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n"
# uvicorn's own default: what a service kept before the setting
UVICORN_KEEP_ALIVE_S = 5


async def _pong(_: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


def _app() -> Starlette:
    return Starlette(routes=[Route("/ping", _pong)])


SETTINGS = ServiceSettings(ehr_base_url="http://ehr.test/fhir", http_port=8080)


def _answered(sock: socket.socket, stream: io.RawIOBase) -> int:
    """Send one request and read its whole answer; its status."""
    sock.sendall(REQUEST)
    status_line = stream.readline()
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    stream.read(length)
    return int(status_line.split()[1])


def _open_for_after_one_answer(base_url: str) -> tuple[int, float]:
    """The first answer's status, and how long the idle connection then stayed open."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        status = _answered(sock, sock.makefile("rb", buffering=0))
        idle_from = time.monotonic()
        closed = sock.recv(1)  # b"": the server closed the connection
        assert closed == b""
        return status, time.monotonic() - idle_from


def _answers_after_idle(base_url: str, idle_s: float) -> tuple[int, int]:
    """The statuses of two answers on one connection, `idle_s` apart."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        stream = sock.makefile("rb", buffering=0)
        first = _answered(sock, stream)
        time.sleep(idle_s)  # the idle time under test, not a wait for something to happen
        return first, _answered(sock, stream)


async def test_an_idle_connection_is_closed_after_the_keep_alive() -> None:
    async with serve_app(
        _app(),
        settings=ServiceSettings(
            ehr_base_url="http://ehr.test/fhir", http_port=8080, http_keep_alive_s=0.5
        ),
    ) as base_url:
        status, open_for_s = await asyncio.to_thread(_open_for_after_one_answer, base_url)

    assert status == 200
    assert 0.4 <= open_for_s < UVICORN_KEEP_ALIVE_S


async def test_by_default_a_connection_idle_longer_than_uvicorns_own_keep_alive_is_answered() -> (
    None
):
    async with serve_app(_app(), settings=SETTINGS) as base_url:
        first, second = await asyncio.to_thread(
            _answers_after_idle, base_url, UVICORN_KEEP_ALIVE_S + 0.5
        )

    assert (first, second) == (200, 200)
