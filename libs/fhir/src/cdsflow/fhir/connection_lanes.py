"""HTTP/1.1 connections to the EHR, each in a connection pool of its own: an httpx transport.

httpx's transport keeps all of a client's connections in one httpcore pool, and httpcore walks
that whole pool each time a request is added or removed, asking every idle connection whether
the server closed it (a socket poll each). With the writeback's 16 lanes writing at once that
walk cost more CPU than the request itself: a client with 16 requests in flight spent
3.2 ms of CPU per request against a local server, 16 single-connection pools 1.7 ms
(`services/writeback/README.md`, "CPU per write-back").

`ConnectionLanes` holds `lanes` httpx transports of one connection each and hands each
request to one that is free, waiting (in arrival order) while all are busy: as many requests
in flight as lanes, like a pool of that size, but each walk is over one connection. A lane is
busy from the request until its response is closed (read to the end, or closed unread), and
is freed whatever happens to the request: an error, a timeout, a cancellation.

A client given a transport no longer reads proxies from the environment itself, so
`for_url` does it for the one base URL the lanes serve, as httpx would (`HTTPS_PROXY`,
`HTTP_PROXY`, `ALL_PROXY`, and `NO_PROXY` to bypass them).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx


class _ReleasedOnClose(httpx.AsyncByteStream):
    """A response body that frees its lane once closed (httpx closes it after reading it)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._release()


class ConnectionLanes(httpx.AsyncBaseTransport):
    """`lanes` one-connection transports; `options` are `httpx.AsyncHTTPTransport`'s own
    (verify, cert, retries, ...), `limits` excepted."""

    def __init__(self, lanes: int, **options: Any) -> None:
        if lanes < 1:
            raise ValueError("ConnectionLanes needs at least one lane")
        one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._transports = [httpx.AsyncHTTPTransport(limits=one, **options) for _ in range(lanes)]
        self._free: asyncio.Queue[httpx.AsyncHTTPTransport] = asyncio.Queue()
        for transport in self._transports:
            self._free.put_nowait(transport)

    @classmethod
    def for_url(cls, base_url: str, lanes: int, **options: Any) -> ConnectionLanes:
        """Lanes to `base_url`, through the environment's proxy for it when one is set."""
        proxy = environment_proxy(base_url)
        return cls(lanes, proxy=proxy, **options) if proxy else cls(lanes, **options)

    @property
    def lanes(self) -> int:
        return len(self._transports)

    @property
    def free(self) -> int:
        """How many lanes no request holds now."""
        return self._free.qsize()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = await self._free.get()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._free.put_nowait(transport)

        try:
            response = await transport.handle_async_request(request)
        except BaseException:
            release()
            raise
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _ReleasedOnClose(response.stream, release)
        else:  # not a streamed body (not what httpx's own transport answers): nothing held
            release()
        return response

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


def environment_proxy(url: str) -> str | None:
    """The proxy that the environment sets for `url` (`<SCHEME>_PROXY`, else `ALL_PROXY`),
    None when there is none or `NO_PROXY` names its host."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
