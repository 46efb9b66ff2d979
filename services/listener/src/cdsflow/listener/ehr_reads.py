"""The HTTP client the listener reads the EHR with (id-only notifications' focus).

Only `CDSFLOW_EHR_BASE_URL` is read (the URL is built from the focus's type and id by
`cdsflow.fhir.EhrClient`); redirects are not followed; each read is bounded in time and in the
bytes of the answer, so a misbehaving EHR cannot hold a notification or the listener's memory.
Given a tracer, each read is a CLIENT span (`cdsflow.service.ClientSpans`, as the other
services' EHR client makes it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from opentelemetry import trace

from cdsflow.service import ClientSpans


class EhrAnswerTooLarge(Exception):
    """The EHR's answer is larger than the listener accepts (`CDSFLOW_MAX_NOTIFICATION_BYTES`)."""


def ehr_http_client(
    timeout_s: float,
    max_answer_bytes: int,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    auth: httpx.Auth | None = None,
    tracer: trace.Tracer | None = None,
) -> httpx.AsyncClient:
    """An httpx client for the EHR: no redirects, `timeout_s` per read, answers bounded,
    authenticated by `auth` (`cdsflow.service.ehr_auth`; its token requests bounded alike),
    each request a CLIENT span of `tracer` when one is given."""
    bounded = BoundedAnswers(transport or httpx.AsyncHTTPTransport(), max_answer_bytes)
    return httpx.AsyncClient(
        transport=ClientSpans(bounded, tracer) if tracer else bounded,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s),
        auth=auth,
    )


class BoundedAnswers(httpx.AsyncBaseTransport):
    """Refuses an answer whose `Content-Length`, or whose body as it is read, exceeds a limit."""

    def __init__(self, inner: httpx.AsyncBaseTransport, max_answer_bytes: int) -> None:
        self._inner = inner
        self._limit = max_answer_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise EhrAnswerTooLarge(f"the EHR's answer exceeds {self._limit} bytes")
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
                raise EhrAnswerTooLarge(f"the EHR's answer exceeds {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
