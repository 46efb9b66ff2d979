"""The sandbox EHR client of the embedded runtime: its key, its tokens, and the writeback
configured to trust it (and nothing else)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import jwt
import pytest

from cdsflow.runtime.sandbox_ehr_client import (
    HookSigningKey,
    new_private_key,
    sign_hook_token,
)
from cdsflow.runtime.stack import StackOptions, service_environments
from cdsflow.writeback.client_auth import ClientAuthenticator, ClientTokenPolicy, JwksCache
from cdsflow.writeback.domain.client_tokens import SeenTokens, TrustedIssuer

ISSUER = "http://127.0.0.1:4000"
JWKS_URL = ISSUER + "/.well-known/jwks.json"
WRITEBACK = "http://127.0.0.1:8083"
SERVICE_PATH = "/cds-services/cdsflow-deterioration"
ENDPOINTS = {
    "broker": "127.0.0.1:9092",
    "triton_grpc": "127.0.0.1:8001",
    "ehr": "http://127.0.0.1:8080/fhir",
    "otlp": "http://127.0.0.1:4318",
    "writeback": WRITEBACK,
    "listener": "http://127.0.0.1:8081/fhir/notifications/rest-hook",
    "jwks": JWKS_URL,
    "ehr_client_issuer": ISSUER,
}


@pytest.fixture(scope="module")
def key() -> HookSigningKey:
    return HookSigningKey(new_private_key(), ISSUER)


def test_the_token_is_what_cds_hooks_asks_of_an_ehr(key: HookSigningKey) -> None:
    token = sign_hook_token(key, WRITEBACK + SERVICE_PATH, now=1_000_000)

    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES384", "typ": "JWT", "kid": key.kid}
    [jwk] = key.jwks()["keys"]
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk),
        algorithms=["ES384"],
        audience=WRITEBACK + SERVICE_PATH,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 300
    assert (
        claims["jti"]
        != jwt.decode(
            sign_hook_token(key, WRITEBACK + SERVICE_PATH), options={"verify_signature": False}
        )["jti"]
    )


def test_the_key_set_holds_only_the_public_key(key: HookSigningKey) -> None:
    [jwk] = key.jwks()["keys"]
    assert {name: jwk[name] for name in ("kty", "crv", "kid", "alg", "use")} == {
        "kty": "EC",
        "crv": "P-384",
        "kid": key.kid,
        "alg": "ES384",
        "use": "sig",
    }
    assert "d" not in jwk


def test_the_private_key_file_is_the_owners_only_and_loads_back(
    key: HookSigningKey, tmp_path: Path
) -> None:
    path = tmp_path / "key.pem"
    key.save(path)
    key.save(path)  # written again on the next start

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert HookSigningKey.load(path, ISSUER).kid == key.kid


def test_the_writeback_of_the_stack_trusts_the_sandbox_ehr_only(tmp_path: Path) -> None:
    options = StackOptions(work_dir=tmp_path, model_repository=tmp_path, with_ehr=True)
    writeback = service_environments(options, ENDPOINTS)["writeback"]

    assert writeback["CDSFLOW_HOOKS_AUTH"] == "on"
    # the embedded EHR's sandbox client may lend its token to read from that EHR
    assert json.loads(writeback["CDSFLOW_TRUSTED_ISSUERS"]) == [
        {"iss": ISSUER, "jwks_url": JWKS_URL, "fhir_servers": [ENDPOINTS["ehr"]]}
    ]
    assert writeback["CDSFLOW_CDS_PUBLIC_BASE_URL"] == WRITEBACK
    for name, environment in service_environments(options, ENDPOINTS).items():
        if name != "writeback":
            assert "CDSFLOW_TRUSTED_ISSUERS" not in environment


async def test_the_writeback_accepts_the_sandbox_token_once(key: HookSigningKey) -> None:
    def serve(request: httpx.Request) -> httpx.Response:
        return (
            httpx.Response(200, json=key.jwks())
            if str(request.url) == JWKS_URL
            else (httpx.Response(404))
        )

    policy = ClientTokenPolicy(
        issuers={ISSUER: TrustedIssuer(ISSUER, JWKS_URL)},
        algorithms=frozenset({"ES384", "RS384"}),
        public_base_urls=(WRITEBACK,),
        skew_s=30,
        max_lifetime_s=600,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http:
        verifier = ClientAuthenticator(
            policy, JwksCache(http, ttl_s=300, refetch_interval_s=10), SeenTokens(10)
        )
        token = sign_hook_token(key, WRITEBACK + SERVICE_PATH)
        assert await verifier.authenticate(f"Bearer {token}", SERVICE_PATH) == ISSUER
