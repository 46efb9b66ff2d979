"""The bound on a request's head (`max_header_bytes`) that the services' httptools protocol
keeps: it counts head bytes only, however they arrive, and never a body's."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cdsflow.service import ServiceSettings
from tests.support.asgi import serve_app

LIMIT = 2048


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"body_bytes": len(await request.body())})


def _settings() -> ServiceSettings:
    return ServiceSettings(
        ehr_base_url="http://ehr.test/fhir", http_port=8080, max_header_bytes=LIMIT
    )


def _request(header_bytes: int, body: bytes = b"") -> bytes:
    filler = b"x" * header_bytes
    return (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Filler: " + filler + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


def _exchange(base_url: str, chunks: list[bytes], count: int) -> list[tuple[int, bytes]]:
    """Send the chunks one by one on one connection; read `count` answers (status, body)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # the server may answer and close before it has read everything
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(0.01)  # separate reads on the server's side
        stream = sock.makefile("rb")
        answers = []
        for _ in range(count):
            status_line = stream.readline()
            headers = {}
            while (line := stream.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            answers.append((int(status_line.split()[1]), body))
        return answers


async def _answers(base_url: str, chunks: list[bytes], count: int) -> list[tuple[int, bytes]]:
    return await asyncio.to_thread(_exchange, base_url, chunks, count)


async def test_a_large_body_behind_a_small_head_is_not_counted_as_head() -> None:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    body = b"b" * (1024 * 1024)
    async with serve_app(app, settings=_settings()) as base_url:
        # head and body in one write: the reads that carry the body start inside the head
        answers = await _answers(base_url, [_request(LIMIT // 2, body)], 1)

    [(status, answer)] = answers
    assert (status, json.loads(answer)) == (200, {"body_bytes": len(body)})


async def test_pipelined_requests_are_bounded_each_on_its_own() -> None:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    one = _request(LIMIT * 3 // 4, b"{}")
    async with serve_app(app, settings=_settings()) as base_url:
        # three heads of 3/4 of the limit on one connection, in one write and then apart
        together = await _answers(base_url, [one * 3], 3)
        apart = await _answers(base_url, [one, one, one], 3)

    assert [status for status, _ in together + apart] == [200] * 6


async def test_a_head_trickled_past_the_limit_is_refused_431() -> None:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    head = _request(LIMIT * 2)
    chunks = [head[i : i + 256] for i in range(0, len(head), 256)]
    async with serve_app(app, settings=_settings()) as base_url:
        [(status, body)] = await _answers(base_url, chunks, 1)

    assert status == 431
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "too-costly"
