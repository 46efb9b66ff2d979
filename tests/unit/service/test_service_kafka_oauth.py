"""The OAUTHBEARER token provider: client credentials asked for once and reused until
shortly before expiry, failures as Kafka errors that name no secret (a local transport
stands in for the identity provider: pure logic, no network)."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import parse_qs

import httpx
import pytest
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from cdsflow.service import ClientCredentialsTokens, KafkaTokenError

TOKEN_URL = "https://idp.test/oauth2/token"
SECRET = "a-client-secret-0123456789"


class TokenEndpoint:
    """Answers each token request with a new token valid for `expires_in` seconds."""

    def __init__(self, expires_in: int = 300, status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        self._expires_in = expires_in
        self._status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self._status != 200:
            return httpx.Response(
                self._status, json={"error": "invalid_client", "error_description": SECRET}
            )
        return httpx.Response(
            200,
            json={
                "access_token": f"token-{len(self.requests)}",
                "token_type": "Bearer",
                "expires_in": self._expires_in,
            },
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(
    endpoint: TokenEndpoint, clock: Clock, scope: str | None = "kafka"
) -> ClientCredentialsTokens:
    return ClientCredentialsTokens(
        TOKEN_URL,
        "cdsflow",
        SecretStr(SECRET),
        scope,
        transport=httpx.MockTransport(endpoint),
        monotonic=clock,
    )


async def test_the_token_is_asked_for_once_and_reused() -> None:
    endpoint, clock = TokenEndpoint(), Clock()
    tokens = provider(endpoint, clock)

    first = await asyncio.gather(*(tokens.token() for _ in range(5)))
    clock.now += 200
    later = await tokens.token()

    assert first == ["token-1"] * 5
    assert later == "token-1"
    assert len(endpoint.requests) == 1 == tokens.token_requests


async def test_a_new_token_is_fetched_shortly_before_expiry() -> None:
    endpoint, clock = TokenEndpoint(expires_in=300), Clock()
    tokens = provider(endpoint, clock)
    await tokens.token()

    clock.now += 300 - 60 - 1  # a minute's margin on a five-minute token
    assert await tokens.token() == "token-1"
    clock.now += 1
    assert await tokens.token() == "token-2"
    assert len(endpoint.requests) == 2


async def test_the_request_is_a_client_credentials_grant_with_basic_auth() -> None:
    endpoint = TokenEndpoint()
    await provider(endpoint, Clock(), scope=" kafka  cluster ").token()

    request = endpoint.requests[0]
    assert request.method == "POST"
    assert str(request.url) == TOKEN_URL
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["kafka cluster"],
    }
    credentials = base64.b64decode(request.headers["authorization"].removeprefix("Basic "))
    assert credentials.decode() == f"cdsflow:{SECRET}"


async def test_no_scope_is_sent_when_none_is_configured() -> None:
    endpoint = TokenEndpoint()
    await provider(endpoint, Clock(), scope=None).token()

    assert parse_qs(endpoint.requests[0].content.decode()) == {"grant_type": ["client_credentials"]}


async def test_a_refusal_is_a_kafka_error_naming_no_secret() -> None:
    tokens = provider(TokenEndpoint(status=401), Clock())

    with pytest.raises(
        KafkaTokenError, match=r"refused cdsflow \(401\): invalid_client"
    ) as refused:
        await tokens.token()

    assert isinstance(refused.value, KafkaError)
    assert SECRET not in str(refused.value)
    assert SECRET not in repr(tokens)


@pytest.mark.parametrize(
    "body",
    [{"token_type": "Bearer"}, {"access_token": "t", "expires_in": 0}, ["not", "an", "object"]],
)
async def test_a_useless_answer_is_refused(body: object) -> None:
    tokens = ClientCredentialsTokens(
        TOKEN_URL,
        "cdsflow",
        SecretStr(SECRET),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, json=body)),
    )

    with pytest.raises(KafkaTokenError, match="the Kafka token endpoint answered"):
        await tokens.token()


async def test_an_unreachable_endpoint_is_a_kafka_error() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    tokens = ClientCredentialsTokens(
        TOKEN_URL, "cdsflow", SecretStr(SECRET), transport=httpx.MockTransport(unreachable)
    )

    with pytest.raises(KafkaTokenError, match=r"unreachable \(ConnectError\)"):
        await tokens.token()
