"""An httpx transport for clients whose requests go to more than one server (a hook call's
`fhirServer`, an issuer's JWKS): each request through the proxy that the environment sets for
its URL (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`; `NO_PROXY` bypasses them), as httpx's own
client does when it is given no transport. A client given a transport of ours (to bound its
answers, to make its CLIENT spans) reads no proxy from the environment itself, so this one
does: once per scheme and host (the environment is read at the first request to it, not at
every request), keeping one connection pool per proxy (and one for direct requests).
"""

from __future__ import annotations

import httpx

from cdsflow.fhir import environment_proxy


class EnvironmentProxies(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        # (scheme, host) -> its proxy URL (None: direct)
        self._proxies: dict[tuple[str, str], str | None] = {}
        # proxy URL (None: direct) -> its pool
        self._transports: dict[str | None, httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        where = (url.scheme, url.host)
        if where not in self._proxies:
            self._proxies[where] = environment_proxy(str(url))
        proxy = self._proxies[where]
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
