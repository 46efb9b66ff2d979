"""SMART Backend Services as an `httpx.Auth` (`CDSFLOW_EHR_AUTH=smart-backend`).

Each request to the EHR carries `Authorization: Bearer <access token>`. The token comes from
the EHR's token endpoint (`client_credentials`, authenticated by a signed client assertion,
see `client_assertion.py`), found in `{base}/.well-known/smart-configuration` unless it is
configured. It is kept until shortly before `expires_in` runs out; one request at a time
fetches a new one while the others wait for it. A 401 from the FHIR server makes the token
stale: one new token and one more try, then the 401 is the caller's.

The token requests go through the same httpx client as the FHIR requests (the auth flow
yields them), so they share its transport, limits, timeout and tracing; no second client
needs closing. Neither the assertion nor the token is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from cdsflow.fhir.access_tokens import AccessToken, access_token_from, token_endpoint_from
from cdsflow.fhir.client_assertion import CLIENT_ASSERTION_TYPE, SigningKey, client_assertion

log = logging.getLogger("cdsflow.fhir.auth")

SMART_CONFIGURATION_PATH = "/.well-known/smart-configuration"


@dataclass(frozen=True)
class BackendServicesClient:
    """How cdsflow is registered with the EHR: its client id, signing key and scopes, and the
    token endpoint when it is not to be discovered."""

    base_url: str
    client_id: str
    signing_key: SigningKey = field(repr=False)
    scopes: str
    token_url: str | None = None


TokenExchange = Generator[httpx.Request, httpx.Response, AccessToken]


class _Counted(Protocol):
    def inc(self) -> None: ...


class SmartBackendAuth(httpx.Auth):
    """Bearer tokens from the EHR's token endpoint, cached, refreshed once at a time."""

    def __init__(
        self,
        client: BackendServicesClient,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._token_url = client.token_url
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._token: AccessToken | None = None
        self._refreshing = asyncio.Lock()
        # token requests sent (tests and operators can see that tokens are reused)
        self.token_requests = 0
        # called with `fetched`, `failed` or `cached` for each token obtained, failed to
        # obtain, or reused (`count_access_tokens` makes it the service's metric)
        self.on_token: Callable[[str], _Counted] | None = None

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self._client.client_id!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise TypeError("SmartBackendAuth works with httpx.AsyncClient only")
        yield request  # pragma: no cover - makes this a generator

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._usable_token()
        for attempt in (1, 2):
            if token is not None:
                self._count("cached")
            else:
                async with self._refreshing:
                    # another request may have fetched one while this one waited
                    token = self._usable_token()
                    if token is None:
                        try:
                            exchange = self._token_exchange(request)
                            step = next(exchange)
                            while True:
                                answer = yield step
                                await answer.aread()
                                try:
                                    step = exchange.send(answer)
                                except StopIteration as done:
                                    token = done.value
                                    break
                        except (Exception, GeneratorExit):
                            # refused, unreadable, or the request failed (httpx closes the
                            # flow): no token
                            self._count("failed")
                            raise
                        self._count("fetched")
                    else:
                        self._count("cached")
            request.headers["Authorization"] = f"Bearer {token.value}"
            response = yield request
            if response.status_code != 401 or attempt == 2:
                return
            # the EHR no longer takes this token (revoked, its clock ahead): one new one
            if self._token is token:
                self._token = None
            token = None

    def _count(self, outcome: str) -> None:
        if self.on_token is not None:
            self.on_token(outcome).inc()

    def _usable_token(self) -> AccessToken | None:
        token = self._token
        if token is not None and self._monotonic() < token.refresh_at:
            return token
        return None

    def _token_exchange(self, request: httpx.Request) -> TokenExchange:
        """Discover the token endpoint (once), then ask it for a token; each request sent
        with the FHIR request's timeouts."""
        extensions = (
            {"timeout": request.extensions["timeout"]} if "timeout" in request.extensions else {}
        )
        base_url = self._client.base_url
        if self._token_url is None:
            answer = yield httpx.Request(
                "GET",
                base_url + SMART_CONFIGURATION_PATH,
                headers={"Accept": "application/json"},
                extensions=extensions,
            )
            self._token_url = token_endpoint_from(answer, base_url)
        requested_at = self._monotonic()
        self.token_requests += 1
        answer = yield httpx.Request(
            "POST",
            self._token_url,
            headers={"Accept": "application/json"},
            data={
                "grant_type": "client_credentials",
                "scope": self._client.scopes,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": client_assertion(
                    self._client.signing_key,
                    self._client.client_id,
                    self._token_url,
                    self._wall_clock(),
                ),
            },
            extensions=extensions,
        )
        token = access_token_from(answer, requested_at)
        self._token = token
        self._log_granted(token)
        return token

    def _log_granted(self, token: AccessToken) -> None:
        lifetime_s = max(0.0, token.refresh_at - self._monotonic())
        wanted = set(self._client.scopes.split())
        granted = set(token.scope.split())
        if token.scope and wanted - granted:
            log.warning(
                "the EHR granted fewer scopes than requested",
                extra={"scopes_requested": self._client.scopes, "scopes_granted": token.scope},
            )
        log.info("obtained an EHR access token; replaced in %.0f s", lifetime_s)
