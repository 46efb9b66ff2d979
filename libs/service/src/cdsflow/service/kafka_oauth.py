"""OAUTHBEARER tokens for Kafka (`CDSFLOW_KAFKA_SASL_MECHANISM=OAUTHBEARER`): the OAuth 2.0
client-credentials grant at `CDSFLOW_KAFKA_OAUTH_TOKEN_URL`, the client authenticated with
HTTP Basic (`CDSFLOW_KAFKA_OAUTH_CLIENT_ID` and the secret in `CDSFLOW_KAFKA_SASL_PASSWORD`),
as Apache Kafka's own OAuth login module asks.

aiokafka asks the provider for a token on every connection it authenticates; the token is kept
until shortly before its `expires_in` runs out (a fifth of its life, at most a minute, as the
EHR's tokens are), and one caller at a time fetches a new one while the others wait for it.
A failure is a `KafkaTokenError`, a `KafkaError`: the client treats it as a broker it cannot
reach yet and tries again. Neither the secret nor a token is ever logged or put in an error.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import httpx
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from cdsflow.fhir.access_tokens import DEFAULT_EXPIRES_IN_S, AccessToken, refresh_margin_s

DEFAULT_TIMEOUT_S = 10.0
_OAUTH_ERROR = re.compile(r"[a-z][a-z_]{0,63}\Z")


class KafkaTokenError(KafkaError):  # type: ignore[misc]
    """No token from the Kafka token endpoint (unreachable, refused, or a useless answer)."""


class ClientCredentialsTokens(AbstractTokenProvider):  # type: ignore[misc]
    """The `sasl_oauth_token_provider` of every Kafka client of a service."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._scope = " ".join(scope.split()) if scope else ""
        self._timeout_s = timeout_s
        self._transport = transport
        self._monotonic = monotonic
        self._token: AccessToken | None = None
        self._refreshing = asyncio.Lock()
        # token requests sent (tests and operators can see that tokens are reused)
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"ClientCredentialsTokens(client_id={self._client_id!r})"

    async def token(self) -> str:
        """A token that has not reached its refresh time; fetched when there is none."""
        async with self._refreshing:
            token = self._token
            if token is None or self._monotonic() >= token.refresh_at:
                token = self._token = await self._fetch()
            return token.value

    async def _fetch(self) -> AccessToken:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        auth = httpx.BasicAuth(self._client_id, self._client_secret.get_secret_value())
        requested_at = self._monotonic()
        self.token_requests += 1
        try:
            # one short-lived client per fetch: a fetch comes once per token lifetime
            async with httpx.AsyncClient(
                timeout=self._timeout_s, transport=self._transport, follow_redirects=False
            ) as client:
                response = await client.post(self._token_url, data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise KafkaTokenError(
                f"the Kafka token endpoint is unreachable ({type(exc).__name__})"
            ) from None
        return _token_from(response, requested_at)


def _token_from(response: httpx.Response, requested_at: float) -> AccessToken:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200:
        error = body.get("error")
        reason = f": {error}" if isinstance(error, str) and _OAUTH_ERROR.match(error) else ""
        raise KafkaTokenError(
            f"the Kafka token endpoint refused cdsflow ({response.status_code}){reason}"
        )
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise KafkaTokenError("the Kafka token endpoint answered without an access_token")
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN_S)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise KafkaTokenError("the Kafka token endpoint answered an unusable expires_in")
    scope = body.get("scope")
    return AccessToken(
        value=value,
        refresh_at=requested_at + expires_in - refresh_margin_s(expires_in),
        scope=scope if isinstance(scope, str) else "",
    )
