"""The connections to the EHR: an httpx transport on aiohttp's connection pool.

httpx's own transport (httpcore over h11) parses every answer in pure Python, and walks its
whole pool on each request added or removed. Measured on this project's 2-core machine, a
client sending a 7.6 kB POST (a write-back's size) to a local server, 16 in flight, spent per
request 1.40-1.46 ms of CPU on httpx's transport (16 one-connection pools, the way this
client was built before) and 0.94-0.97 ms on aiohttp's (`httpx_aiohttp.AiohttpTransport`),
the rest being httpx's client itself (the one-off script and the figures: the writeback's
README, "CPU per write-back").

`ehr_connections(base_url, connections)` is that transport with at most `connections`
connections, each kept alive between requests: a client built with it
(`httpx.AsyncClient(transport=ehr_connections(base_url, n))`) has at most `n` requests in
flight, and the others wait for a free connection. The client keeps httpx's interface (its
auth flows, timeouts and errors: a connection refused or reset is an
`httpx.TransportError`, a read past its timeout `httpx.ReadTimeout`). httpx-aiohttp names
every error of aiohttp's connection family `httpx.ConnectTimeout`; the two that are no
timeout get httpx's own names back here, so that logs and `error.type` say what happened: a
connection refused (or its host not found) is an `httpx.ConnectError`, and a server that hung
up before its answer an `httpx.RemoteProtocolError`.

A client given a transport no longer reads proxies from the environment itself, so the
proxy that the environment sets for the one base URL is applied here, as httpx would
(`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, and `NO_PROXY` to bypass them).
"""

from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def ehr_connections(base_url: str, connections: int) -> httpx.AsyncBaseTransport:
    """At most `connections` kept-alive connections to `base_url`, through the environment's
    proxy for it when one is set."""
    if connections < 1:
        raise ValueError("the EHR client needs at least one connection")
    proxy = environment_proxy(base_url)
    return _EhrConnections(
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        proxy=httpx.Proxy(proxy) if proxy else None,
    )


class _EhrConnections(AiohttpTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ServerDisconnectedError):
                raise httpx.RemoteProtocolError(str(exc), request=request) from cause
            raise


def environment_proxy(url: str) -> str | None:
    """The proxy that the environment sets for `url` (`<SCHEME>_PROXY`, else `ALL_PROXY`),
    None when there is none or `NO_PROXY` names its host."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy
