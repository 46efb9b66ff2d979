"""The CDS Hooks 2.0.1 spec's JWT example (pack: cds-hooks/examples/spec-2.0.1): the writeback's
verifier, trusting the example EHR and its JWK Set, refuses the example token because it
expired in 2015, and accepts the same kind of token signed now with the example's key."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from cdsflow.writeback.client_auth import ClientAuthenticator, ClientTokenPolicy, JwksCache
from cdsflow.writeback.domain.client_tokens import SeenTokens, TokenRejected, TrustedIssuer

pytestmark = pytest.mark.conformance

EXAMPLE_ISSUER = "https://fhir-ehr.example.com/"
EXAMPLE_JKU = "https://fhir-ehr.example.com/jwk_uri"
EXAMPLE_SERVICE = "/cds-services/some-service"


def example(conformance_dir: Path, name: str) -> Any:
    return json.loads((conformance_dir / "cds-hooks/examples/spec-2.0.1" / name).read_text())


@pytest.fixture
def example_token(conformance_dir: Path) -> str:
    path = conformance_dir / "cds-hooks/examples/spec-2.0.1/jwt-compact-EXAMPLE.txt"
    return path.read_text().strip()


@pytest.fixture
async def verifier(conformance_dir: Path) -> AsyncIterator[ClientAuthenticator]:
    key_set = example(conformance_dir, "jwks-public.json")

    def serve(request: httpx.Request) -> httpx.Response:
        found = str(request.url) == EXAMPLE_JKU
        return httpx.Response(200, json=key_set) if found else httpx.Response(404)

    policy = ClientTokenPolicy(
        issuers={EXAMPLE_ISSUER: TrustedIssuer(EXAMPLE_ISSUER, None, (EXAMPLE_JKU,))},
        algorithms=frozenset({"ES384", "RS384"}),
        public_base_urls=("https://cds.example.org",),
        skew_s=30,
        max_lifetime_s=600,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        keys = JwksCache(http, ttl_s=300, refetch_interval_s=10)
        yield ClientAuthenticator(policy, keys, SeenTokens(100))


def test_the_example_token_is_genuine_apart_from_its_age(
    conformance_dir: Path, example_token: str
) -> None:
    """So that its refusal below is for its expiry, not for a broken signature."""
    [key] = example(conformance_dir, "jwks-public.json")["keys"]
    claims = jwt.decode(
        example_token,
        jwt.PyJWK(key),
        algorithms=["ES384"],
        audience="https://cds.example.org/cds-services/some-service",
        options={"verify_exp": False},
    )
    assert claims == example(conformance_dir, "jwt-payload.json")
    assert jwt.get_unverified_header(example_token) == example(conformance_dir, "jwt-header.json")


async def test_the_expired_example_token_is_refused(
    verifier: ClientAuthenticator, example_token: str
) -> None:
    with pytest.raises(TokenRejected) as rejected:
        await verifier.authenticate(f"Bearer {example_token}", EXAMPLE_SERVICE)
    assert rejected.value.reason == "expired"


async def test_a_fresh_token_signed_with_the_example_key_is_accepted(
    verifier: ClientAuthenticator, conformance_dir: Path
) -> None:
    private = jwt.PyJWK(example(conformance_dir, "jwk-private-EXAMPLE-ONLY.json"))
    now = int(time.time())
    claims = {
        **example(conformance_dir, "jwt-payload.json"),
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }
    token = jwt.encode(
        claims, private, algorithm="ES384", headers=example(conformance_dir, "jwt-header.json")
    )

    assert await verifier.authenticate(f"Bearer {token}", EXAMPLE_SERVICE) == EXAMPLE_ISSUER
