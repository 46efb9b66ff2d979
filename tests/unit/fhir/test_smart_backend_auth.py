"""SMART Backend Services over httpx.MockTransport: discovery, the token request, caching by
an injected clock, one refresh under concurrency, one retry on a 401, refusal vs outage.
(Against SEKMET's real token endpoint: tests/integration/test_ehr_auth.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest

from cdsflow.fhir import (
    BackendServicesClient,
    EhrAuthError,
    EhrClient,
    EhrError,
    SmartBackendAuth,
    StaticBearerAuth,
    count_access_tokens,
    is_ehr_outage,
    load_signing_key,
)
from cdsflow.telemetry import MetricsRegistry
from tests.support.signing_keys import KeyPairFiles, write_key_pair

BASE = "https://ehr.test/fhir"
TOKEN_URL = "https://auth.ehr.test/oauth2/token"
PATIENT = {"resourceType": "Patient", "id": "p1"}


@dataclass
class Clock:
    wall: float = 1_800_000_000.0
    monotonic: float = 500.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds


@dataclass
class FakeEhr:
    """A token endpoint that checks each assertion with the registered public key, a SMART
    configuration, and a FHIR server that takes only the tokens it issued last."""

    key: KeyPairFiles
    expires_in: int = 3600
    token_answers: list[httpx.Response] = field(default_factory=list)
    fhir_statuses: list[int] = field(default_factory=list)
    before_token: Callable[[], Awaitable[None]] | None = None
    issued: list[str] = field(default_factory=list)
    assertions: list[dict[str, object]] = field(default_factory=list)
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    discoveries: int = 0
    fhir_tokens: list[str] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == f"{BASE}/.well-known/smart-configuration":
            self.discoveries += 1
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
        if url == TOKEN_URL:
            return await self._token(request)
        self.fhir_tokens.append(request.headers.get("authorization", ""))
        if self.fhir_statuses:
            return httpx.Response(self.fhir_statuses.pop(0), json=PATIENT)
        return httpx.Response(200, json=PATIENT)

    async def _token(self, request: httpx.Request) -> httpx.Response:
        if self.before_token is not None:
            await self.before_token()
        form = parse_qs(request.content.decode())
        self.forms.append(form)
        self.assertions.append(
            jwt.decode(
                form["client_assertion"][0],
                self.key.public_key,
                algorithms=["ES384", "RS384"],
                audience=TOKEN_URL,
            )
        )
        if self.token_answers:
            return self.token_answers.pop(0)
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.expires_in,
                "scope": "system/*.read",
            },
        )


@pytest.fixture
def key(tmp_path: Path) -> KeyPairFiles:
    return write_key_pair(tmp_path, "cdsflow", "ES384")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _auth(key: KeyPairFiles, clock: Clock, token_url: str | None = None) -> SmartBackendAuth:
    return SmartBackendAuth(
        BackendServicesClient(
            base_url=BASE,
            client_id="cdsflow-client",
            signing_key=load_signing_key(key.private_key_file, key.key_id),
            scopes="system/*.read",
            token_url=token_url,
        ),
        wall_clock=lambda: clock.wall,
        monotonic=lambda: clock.monotonic,
    )


def _ehr_client(ehr: FakeEhr, auth: httpx.Auth, attempts: int = 3) -> EhrClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(ehr.handle), auth=auth)
    return EhrClient(BASE, http, attempts=attempts)


async def test_the_token_endpoint_is_discovered_once_and_the_token_reused(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key)
    auth = _auth(key, clock)
    client = _ehr_client(ehr, auth)

    assert await client.read("Patient", "p1") == PATIENT
    assert await client.read("Patient", "p1") == PATIENT

    assert ehr.discoveries == 1
    assert auth.token_requests == 1
    assert ehr.fhir_tokens == ["Bearer token-1", "Bearer token-1"]
    (form,) = ehr.forms
    assert form["grant_type"] == ["client_credentials"]
    assert form["scope"] == ["system/*.read"]
    assert form["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    (claims,) = ehr.assertions
    assert claims["iss"] == claims["sub"] == "cdsflow-client"
    assert claims["exp"] == int(clock.wall) + 240


async def test_a_configured_token_url_is_used_without_discovery(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key)
    await _ehr_client(ehr, _auth(key, clock, token_url=TOKEN_URL)).read("Patient", "p1")

    assert ehr.discoveries == 0
    assert ehr.issued == ["token-1"]


async def test_a_token_is_replaced_shortly_before_expires_in(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key, expires_in=300)  # replaced after 240 s
    auth = _auth(key, clock)
    client = _ehr_client(ehr, auth)

    await client.read("Patient", "p1")
    clock.advance(239)
    await client.read("Patient", "p1")
    assert ehr.issued == ["token-1"]

    clock.advance(1)
    await client.read("Patient", "p1")

    assert ehr.issued == ["token-1", "token-2"]
    assert ehr.fhir_tokens[-1] == "Bearer token-2"
    assert ehr.assertions[0]["jti"] != ehr.assertions[1]["jti"]
    assert ehr.assertions[1]["exp"] == int(clock.wall) + 240


async def test_concurrent_requests_wait_for_one_token_request(
    key: KeyPairFiles, clock: Clock
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold_the_token_answer() -> None:
        entered.set()
        await release.wait()

    ehr = FakeEhr(key, before_token=hold_the_token_answer)
    auth = _auth(key, clock)
    client = _ehr_client(ehr, auth)

    reads = [asyncio.create_task(client.read("Patient", "p1")) for _ in range(20)]
    await entered.wait()
    for _ in range(100):  # let every other read run up to where it waits
        await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*reads)

    assert results == [PATIENT] * 20
    assert auth.token_requests == 1
    assert ehr.fhir_tokens == ["Bearer token-1"] * 20


async def test_a_401_fetches_one_new_token_and_tries_once_more(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key, fhir_statuses=[401])
    auth = _auth(key, clock)

    assert await _ehr_client(ehr, auth).read("Patient", "p1") == PATIENT

    assert ehr.fhir_tokens == ["Bearer token-1", "Bearer token-2"]
    assert auth.token_requests == 2


async def test_a_second_401_is_the_callers_and_not_an_outage(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key, fhir_statuses=[401, 401, 401])
    auth = _auth(key, clock)

    with pytest.raises(EhrError) as err:
        await _ehr_client(ehr, auth).read("Patient", "p1")

    assert err.value.status_code == 401
    assert not is_ehr_outage(err.value)
    assert ehr.fhir_tokens == ["Bearer token-1", "Bearer token-2"]


async def test_a_refusing_token_endpoint_is_an_auth_error_tried_once(
    key: KeyPairFiles, clock: Clock
) -> None:
    refusal = httpx.Response(
        401,
        json={"error": "invalid_client", "error_description": "Signature verification failed"},
    )
    ehr = FakeEhr(key, token_answers=[refusal])
    auth = _auth(key, clock)

    with pytest.raises(EhrAuthError) as err:
        await _ehr_client(ehr, auth, attempts=3).read("Patient", "p1")

    assert "invalid_client: Signature verification failed" in str(err.value)
    assert not is_ehr_outage(err.value)
    assert auth.token_requests == 1
    assert ehr.fhir_tokens == []


async def test_a_failing_token_endpoint_is_an_outage_retried_like_one(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key, token_answers=[httpx.Response(503, json={})] * 3)
    auth = _auth(key, clock)

    with pytest.raises(EhrError) as err:
        await _ehr_client(ehr, auth, attempts=3).read("Patient", "p1")

    assert is_ehr_outage(err.value)
    assert auth.token_requests == 3


async def test_an_outage_then_recovery_gets_a_token(key: KeyPairFiles, clock: Clock) -> None:
    ehr = FakeEhr(key, token_answers=[httpx.Response(502, json={})])

    assert await _ehr_client(ehr, _auth(key, clock), attempts=2).read("Patient", "p1") == PATIENT
    assert ehr.fhir_tokens == ["Bearer token-1"]


async def test_neither_token_nor_assertion_reaches_the_logs(
    key: KeyPairFiles, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ehr = FakeEhr(key, fhir_statuses=[401])
    caplog.set_level(logging.DEBUG)

    await _ehr_client(ehr, _auth(key, clock)).read("Patient", "p1")

    logged = " ".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    assert "obtained an EHR access token" in logged
    assert "token-1" not in logged
    assert "token-2" not in logged
    assert "eyJ" not in logged


def test_a_sync_client_is_refused(key: KeyPairFiles, clock: Clock) -> None:
    with (
        httpx.Client(
            transport=httpx.MockTransport(lambda _: httpx.Response(200)), auth=_auth(key, clock)
        ) as http,
        pytest.raises(TypeError, match="AsyncClient only"),
    ):
        http.get(f"{BASE}/metadata")


async def test_a_static_bearer_goes_on_every_request() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json=PATIENT)

    auth = StaticBearerAuth("static-token-0123456789")
    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), auth=auth)
    await EhrClient(BASE, http).read("Patient", "p1")
    await EhrClient(BASE, http).read("Patient", "p2")

    assert seen == ["Bearer static-token-0123456789"] * 2
    assert "static-token" not in repr(auth)


async def test_an_unreachable_token_endpoint_is_an_outage_and_frees_the_next_try(
    key: KeyPairFiles, clock: Clock
) -> None:
    ehr = FakeEhr(key)
    unreachable = [True]  # the first token request only

    async def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL and unreachable:
            unreachable.clear()
            raise httpx.ConnectError("connection refused", request=request)
        return await ehr.handle(request)

    auth = _auth(key, clock, token_url=TOKEN_URL)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), auth=auth)

    with pytest.raises(httpx.ConnectError) as err:
        await EhrClient(BASE, http, attempts=1).read("Patient", "p1")
    assert is_ehr_outage(err.value)

    # the refresh that failed holds nothing: the next read fetches a token and gets through
    assert await asyncio.wait_for(EhrClient(BASE, http).read("Patient", "p1"), 5) == PATIENT
    assert ehr.fhir_tokens == ["Bearer token-1"]


def _tokens(registry: MetricsRegistry) -> dict[str, float]:
    return {
        outcome: registry.registry.get_sample_value(
            "cdsflow_ehr_access_tokens_total", {"outcome": outcome}
        )
        or 0.0
        for outcome in ("fetched", "failed", "cached")
    }


async def test_tokens_fetched_failed_and_cached_are_counted(
    key: KeyPairFiles, clock: Clock
) -> None:
    """A refusal, then a token, reused twice, then replaced after it expires."""
    refusal = httpx.Response(400, json={"error": "invalid_client"})
    ehr = FakeEhr(key, expires_in=600, token_answers=[refusal])
    auth = _auth(key, clock)
    registry = MetricsRegistry("reasoner")
    count_access_tokens(auth, registry)
    assert _tokens(registry) == {"fetched": 0, "failed": 0, "cached": 0}  # shown from the start
    client = _ehr_client(ehr, auth)

    with pytest.raises(EhrAuthError):
        await client.read("Patient", "p1")
    for _ in range(3):
        await client.read("Patient", "p1")
    clock.advance(600)
    await client.read("Patient", "p1")

    assert _tokens(registry) == {"fetched": 2, "failed": 1, "cached": 2}


async def test_an_unreachable_token_endpoint_counts_as_failed(
    key: KeyPairFiles, clock: Clock
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    auth = _auth(key, clock, token_url=TOKEN_URL)
    registry = MetricsRegistry("writeback")
    count_access_tokens(auth, registry)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handle), auth=auth)

    with pytest.raises(httpx.ConnectError):
        await EhrClient(BASE, http, attempts=1).read("Patient", "p1")

    assert _tokens(registry)["failed"] == 1


def test_a_static_bearer_has_no_tokens_to_count() -> None:
    registry = MetricsRegistry("listener")
    count_access_tokens(StaticBearerAuth("static-token-0123456789"), registry)
    count_access_tokens(None, registry)
    assert (
        registry.registry.get_sample_value("cdsflow_ehr_access_tokens_total", {"outcome": "cached"})
        is None
    )
