"""An httpx transport that refuses an answer larger than a limit, so that a server that
misbehaves (the EHR the listener reads, the `fhirServer` a hook call names) cannot fill the
service's memory: an answer whose `Content-Length` says more is refused before its body is
read, and one that sends more than it said, or says nothing, is cut off where it passes the
limit. Both raise `AnswerTooLarge`, which the caller maps to its own answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


class AnswerTooLarge(Exception):
    """The server's answer is larger than the client accepts."""


class BoundedAnswers(httpx.AsyncBaseTransport):
    """Refuses an answer whose `Content-Length`, or whose body as it is read, exceeds
    `max_answer_bytes`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, max_answer_bytes: int) -> None:
        self._inner = inner
        self._limit = max_answer_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise AnswerTooLarge(f"the answer exceeds {self._limit} bytes")
        stream = response.stream
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("an async transport must answer with an async stream")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_BoundedStream(stream, self._limit),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _BoundedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = 0
        async for chunk in self._inner:
            read += len(chunk)
            if read > self._limit:
                raise AnswerTooLarge(f"the answer exceeds {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
