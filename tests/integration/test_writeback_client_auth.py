"""The writeback trusting an EHR: its hook calls carry JWTs signed with real ES384/RS384 keys,
verified against the EHR's JWK Set served over HTTP on loopback by the test.

Each refusal is a 401 that says nothing of why (the metric does), with
`WWW-Authenticate: Bearer`, and the token is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cdsflow.telemetry import Telemetry
from cdsflow.writeback.app import create_app
from cdsflow.writeback.settings import Settings
from tests.conftest import KafkaEndpoint
from tests.support.asgi import serve_app
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry
from tests.unit.writeback.client_keys import (
    SERVICE_PATH,
    SigningKey,
    bearer,
    es384_key,
    hook_token,
    jwks,
    rs384_key,
)

pytestmark = pytest.mark.integration

ISSUER = "https://ehr.integration.test/"
PUBLIC_BASE_URL = "https://cds.integration.test"
EHR = "https://ehr.integration.test/fhir"


@dataclass
class KeyServer:
    """The EHR's JWK Set endpoint: what it serves, whether it answers, how often it was asked."""

    keys: dict[str, Any] = field(default_factory=lambda: jwks(es384_key(), rs384_key()))
    status: int = 200
    fetches: int = 0

    async def jwks(self, request: Request) -> Response:
        self.fetches += 1
        if self.status != 200:
            return Response(status_code=self.status)
        return JSONResponse(self.keys)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/jwks.json", self.jwks)])


@dataclass
class TrustingWriteback:
    base_url: str
    telemetry: Telemetry
    key_server: KeyServer

    audience: str = PUBLIC_BASE_URL + SERVICE_PATH

    def token(self, key: SigningKey, **options: Any) -> str:
        options.setdefault("aud", self.audience)
        return hook_token(key, iss=ISSUER, **options)

    def rejections(self, reason: str) -> float:
        value = self.telemetry.metrics.registry.get_sample_value(
            "cdsflow_writeback_hook_token_rejections_total", {"reason": reason}
        )
        return value or 0.0


def patient_view() -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/integration", "patientId": "p-1"},
    }


@contextlib.asynccontextmanager
async def trusting_writeback(
    kafka: KafkaEndpoint,
    pseudonym_key: str,
    unique: str,
    *,
    tenants: list[str] | None = None,
    other_issuers: tuple[dict[str, Any], ...] = (),
) -> AsyncIterator[TrustingWriteback]:
    """The writeback as deployed behind a proxy: the EHR calls PUBLIC_BASE_URL (so that is
    each token's `aud`), and the proxy forwards to the loopback port. On the real broker: an
    accepted token is claimed on this test's claims topic (replays across replicas:
    test_writeback_token_replays.py). `other_issuers`: more `CDSFLOW_TRUSTED_ISSUERS` entries."""
    key_server = KeyServer()
    issuer: dict[str, Any] = {"iss": ISSUER, "jwks_url": ""}
    if tenants is not None:
        issuer["tenants"] = tenants
    async with serve_app(key_server.app()) as keys_url:
        with recording_telemetry("writeback", pseudonym_key) as (telemetry, _):
            settings = Settings(
                kafka_bootstrap=kafka.bootstrap,
                kafka_idempotence=False,
                ehr_base_url=EHR,
                recommendations_topic=f"test.recommendations.{unique}",
                feedback_topic=f"test.feedback.{unique}",
                consumer_group=f"test-writeback-auth-{unique}",
                hook_token_claims_topic=f"test.hook-token-claims.{unique}",
                hook_audit_enabled=False,
                trusted_issuers=[
                    {**issuer, "jwks_url": f"{keys_url}/jwks.json"},
                    *other_issuers,
                ],
                cds_public_base_url=PUBLIC_BASE_URL,
                jwks_refetch_interval_s=0.5,
                # generous on a loaded test machine: not about the claim's deadline
                hook_token_claim_deadline_ms=5_000,
            )
            app = create_app(settings, telemetry=telemetry)
            async with serve_app(app, settings=settings) as base_url:

                async def claims_ready() -> bool:
                    ready = telemetry.metrics.registry.get_sample_value(
                        "cdsflow_writeback_hook_token_claims_ready"
                    )
                    return ready == 1

                await eventually(claims_ready, timeout_s=60, what="hook token claims ready")
                yield TrustingWriteback(base_url, telemetry, key_server)


@pytest.fixture
async def writeback(
    kafka: KafkaEndpoint, pseudonym_key: str, unique: str
) -> AsyncIterator[TrustingWriteback]:
    async with trusting_writeback(kafka, pseudonym_key, unique) as running:
        yield running


@pytest.fixture
async def http(writeback: TrustingWriteback) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=writeback.base_url, timeout=30) as client:
        yield client


async def call(
    http: httpx.AsyncClient,
    authorization: str | None,
    content: bytes | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    body = json.dumps(patient_view()).encode() if content is None else content
    return await http.post(SERVICE_PATH, headers=headers, content=body)


def assert_bare_401(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "login", "diagnostics": "authentication required"}],
    }


@pytest.mark.parametrize("key", [es384_key(), rs384_key()], ids=["ES384", "RS384"])
async def test_a_call_signed_by_the_trusted_ehr_gets_its_cards(
    writeback: TrustingWriteback, http: httpx.AsyncClient, key: SigningKey
) -> None:
    response = await call(http, bearer(writeback.token(key)))

    assert response.status_code == 200, response.text
    assert response.json() == {"cards": []}
    assert writeback.key_server.fetches == 1


async def test_discovery_needs_no_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/cds-services")
    assert response.status_code == 200
    assert response.json()["services"][0]["id"] == "cdsflow-deterioration"


def impostor() -> SigningKey:
    return SigningKey(es384_key().kid, "ES384", ec.generate_private_key(ec.SECP384R1()))


def hmac_token(audience: str) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 60, "jti": "h"}
    secret = es384_key().jwk()["x"]
    return jwt.encode(claims, secret, algorithm="HS384", headers={"kid": es384_key().kid})


def authorization_for(reason: str, w: TrustingWriteback) -> str | None:
    """An Authorization header that fails for `reason`."""
    key = es384_key()
    tokens: dict[str, Callable[[], str]] = {
        "malformed": lambda: "Bearer not.a.jwt",
        "alg-not-allowed": lambda: bearer(hmac_token(w.audience)),
        "unknown-issuer": lambda: bearer(hook_token(key, aud=w.audience)),
        "bad-signature": lambda: bearer(w.token(impostor())),
        "expired": lambda: bearer(w.token(key, issued_at=time.time() - 600)),
        "not-yet-valid": lambda: bearer(w.token(key, issued_at=time.time() + 300)),
        # the loopback URL it was reached on is not the URL the EHR was told to call
        "wrong-audience": lambda: bearer(w.token(key, aud=w.base_url + SERVICE_PATH)),
        "unknown-key": lambda: bearer(w.token(key, header={"kid": "nobody"})),
        "jku-not-allowed": lambda: bearer(w.token(key, header={"jku": "https://evil.test/k"})),
        "lifetime-too-long": lambda: bearer(w.token(key, lifetime_s=3600)),
    }
    return None if reason == "missing" else tokens[reason]()


@pytest.mark.parametrize(
    "reason",
    [
        "missing",
        "malformed",
        "alg-not-allowed",
        "unknown-issuer",
        "bad-signature",
        "expired",
        "not-yet-valid",
        "wrong-audience",
        "unknown-key",
        "jku-not-allowed",
        "lifetime-too-long",
    ],
)
async def test_each_bad_token_is_a_bare_401_counted_by_reason_and_never_logged(
    writeback: TrustingWriteback,
    http: httpx.AsyncClient,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    authorization = authorization_for(reason, writeback)

    assert_bare_401(await call(http, authorization))

    assert writeback.rejections(reason) == 1
    if authorization is not None:
        token = authorization.split()[-1]
        assert not [r for r in caplog.records if token in r.getMessage() + str(r.__dict__)]


async def test_a_replayed_call_is_refused(
    writeback: TrustingWriteback, http: httpx.AsyncClient
) -> None:
    authorization = bearer(writeback.token(es384_key()))
    assert (await call(http, authorization)).status_code == 200

    assert_bare_401(await call(http, authorization))
    assert writeback.rejections("replayed") == 1


async def test_a_rotated_key_is_fetched_from_the_jwks(
    writeback: TrustingWriteback, http: httpx.AsyncClient
) -> None:
    assert (await call(http, bearer(writeback.token(es384_key())))).status_code == 200
    rotated = SigningKey("rotated-es384", "ES384", ec.generate_private_key(ec.SECP384R1()))
    writeback.key_server.keys = jwks(rotated)
    # the re-fetch interval (0.5 s) bounds how often an unknown kid reaches the EHR
    deadline = time.monotonic() + 10
    while True:
        response = await call(http, bearer(writeback.token(rotated)))
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)

    assert response.status_code == 200, response.text
    assert 2 <= writeback.key_server.fetches <= 3


async def test_keys_unavailable_is_a_401(
    writeback: TrustingWriteback, http: httpx.AsyncClient
) -> None:
    writeback.key_server.status = 503

    assert_bare_401(await call(http, bearer(writeback.token(es384_key()))))
    assert writeback.rejections("jwks-unavailable") == 1


async def test_authentication_comes_before_the_body_is_read(http: httpx.AsyncClient) -> None:
    response = await call(http, None, content=b"x" * 10, content_type="text/plain")
    assert_bare_401(response)
    duplicated = await http.post(
        SERVICE_PATH, headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
    )
    assert duplicated.status_code == 400


authorization_values = st.one_of(
    st.text(max_size=80),
    st.builds(lambda t: f"Bearer {t}", st.text(max_size=200)),
    st.builds(
        lambda a, b, c: f"Bearer {a}.{b}.{c}",
        st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=", max_size=60),
        st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=", max_size=60),
        st.text(max_size=20),
    ),
)


def test_a_hostile_authorization_header_is_a_4xx_never_a_5xx(
    kafka: KafkaEndpoint, pseudonym_key: str, unique: str
) -> None:
    async def scenario() -> None:
        async with (
            trusting_writeback(kafka, pseudonym_key, unique) as running,
            httpx.AsyncClient(base_url=running.base_url, timeout=30) as client,
        ):
            signed = running.token(es384_key()).split(".")

            @settings(
                max_examples=150,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(authorization_values, st.sampled_from([0, 1, 2]), st.booleans())
            def answered(value: str, part: int, spliced: bool) -> None:
                if spliced:  # a real token with one part replaced
                    parts = list(signed)
                    parts[part] = value.split()[-1] if value.split() else ""
                    value = "Bearer " + ".".join(parts)
                header = value.encode("ascii", "replace").decode("ascii")
                responses.append(header)

            responses: list[str] = []
            answered()
            for header in responses:
                try:
                    response = await call(client, header)
                except httpx.LocalProtocolError:
                    continue  # not sendable as an HTTP header at all
                assert response.status_code in (400, 401), (response.status_code, response.text)

    asyncio.run(scenario())


async def test_feedback_is_authenticated_like_the_hooks_for_its_own_url(
    writeback: TrustingWriteback, http: httpx.AsyncClient
) -> None:
    feedback_path = SERVICE_PATH + "/feedback"
    key = es384_key()
    body = b'{"feedback": [{"card": "c-1", "outcome": "sideways"}]}'

    async def post(authorization: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        return await http.post(feedback_path, headers=headers, content=body)

    assert_bare_401(await post(None))
    # a token for the hook's URL is not one for its feedback URL
    assert_bare_401(await post(bearer(writeback.token(key))))
    assert writeback.rejections("wrong-audience") == 1

    accepted = await post(bearer(writeback.token(key, aud=PUBLIC_BASE_URL + feedback_path)))
    # past authentication, the body is judged: 400 naming the member, never a 5xx
    assert accepted.status_code == 400, accepted.text
    assert "'feedback[0].outcome'" in accepted.json()["issue"][0]["diagnostics"]


async def test_an_issuer_listing_tenants_is_trusted_only_for_them(
    kafka: KafkaEndpoint, pseudonym_key: str, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        trusting_writeback(
            kafka, pseudonym_key, unique, tenants=["north-hospital", "south-clinic"]
        ) as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=30) as client,
    ):
        key = es384_key()
        for tenant in ("north-hospital", "south-clinic"):
            accepted = await call(client, bearer(running.token(key, claims={"tenant": tenant})))
            assert accepted.status_code == 200, accepted.text

        assert_bare_401(await call(client, bearer(running.token(key))))
        assert running.rejections("tenant-missing") == 1
        refused = running.token(key, claims={"tenant": "east-hospital-7f3a"})
        assert_bare_401(await call(client, bearer(refused)))
        assert running.rejections("tenant-not-allowed") == 1
    # counted by reason; no tenant, allowed or not, is ever logged
    logged = " ".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    for tenant in ("north-hospital", "south-clinic", "east-hospital-7f3a"):
        assert tenant not in logged
