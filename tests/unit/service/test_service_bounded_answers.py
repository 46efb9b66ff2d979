"""`cdsflow.service.BoundedAnswers`: an answer over the limit is refused, whether its
`Content-Length` says so or its body, sent without one, runs past the limit; one within it is
read whole. The server is an `httpx.MockTransport` (pure logic of the transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cdsflow.service import AnswerTooLarge, BoundedAnswers

LIMIT = 100


class _Chunks(httpx.AsyncByteStream):
    """A body sent in chunks, with no Content-Length; counts the chunks the client read."""

    def __init__(self, chunks: int, size: int) -> None:
        self._chunks = chunks
        self._size = size
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self._chunks):
            self.read += 1
            yield b"x" * self._size


def _client(answer: httpx.Response) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=BoundedAnswers(httpx.MockTransport(lambda _: answer), LIMIT))


async def test_an_answer_within_the_limit_is_read_whole() -> None:
    async with _client(httpx.Response(200, content=b"x" * LIMIT)) as client:
        answer = await client.get("http://server.test/small")

    assert answer.content == b"x" * LIMIT


async def test_a_declared_length_over_the_limit_is_refused() -> None:
    async with _client(httpx.Response(200, content=b"x" * (LIMIT + 1))) as client:
        with pytest.raises(AnswerTooLarge, match=f"exceeds {LIMIT} bytes"):
            await client.get("http://server.test/large")


async def test_a_body_without_a_length_is_cut_off_where_it_passes_the_limit() -> None:
    chunks = _Chunks(chunks=1_000, size=30)
    async with _client(httpx.Response(200, stream=chunks)) as client:
        with pytest.raises(AnswerTooLarge):
            await client.get("http://server.test/endless")

    assert chunks.read == 4  # 120 bytes read: nothing after the chunk that passed 100
