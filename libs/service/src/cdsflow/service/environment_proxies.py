"""An httpx transport for clients whose requests go to more than one server (a hook call's
`fhirServer`, an issuer's JWKS): each request through the proxy that the environment sets for
its URL (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`; `NO_PROXY` bypasses them), as httpx's own
client does when it is given no transport. A client given a transport of ours (to bound its
answers, to make its CLIENT spans) reads no proxy from the environment itself, so this one
does, per request, and keeps one connection pool per proxy (and one for direct requests).
"""

from __future__ import annotations

import httpx

from cdsflow.fhir import environment_proxy


class EnvironmentProxies(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        # proxy URL (None: direct) -> its pool
        self._transports: dict[str | None, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        proxy = environment_proxy(str(request.url))
        transport = self._transports.get(proxy)
        if transport is None:
            transport = self._transports[proxy] = httpx.AsyncHTTPTransport(
                proxy=httpx.Proxy(proxy) if proxy else None
            )
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self._transports.values():
            await transport.aclose()
        self._transports.clear()
