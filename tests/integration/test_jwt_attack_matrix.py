"""The JWT attack matrix of issue 10 (item 3), one case per attack, each a real signed or
forged token sent to a real writeback that trusts an EHR whose JWK Set it fetches over HTTP
(`trusting_writeback`): every one is a bare 401, counted under the reason that refused it,
and its token is never logged.

The spec's own example token (CDS Hooks 2.0.1, in the conformance pack) is sent as it is: its
issuer is trusted here through a configured JWK Set holding the example's key, and its `jku`
(the example EHR's, unreachable from here) is not on that issuer's allowlist, so the writeback
refuses it before any key is fetched (`jku-not-allowed`). That it is refused for its age when
its keys can be had is shown by tests/conformance/test_cds_hooks_jwt.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import CONFORMANCE, KafkaEndpoint
from tests.integration.test_writeback_client_auth import (
    ISSUER,
    TrustingWriteback,
    assert_bare_401,
    call,
    trusting_writeback,
)
from tests.support.asgi import serve_app
from tests.unit.writeback.client_keys import bearer, es384_key, hook_token, rs384_key

pytestmark = pytest.mark.integration

EXAMPLE_ISSUER = "https://fhir-ehr.example.com/"
EXAMPLE_PACK = "cds-hooks/examples/spec-2.0.1"

# attack -> the reason it is counted under (cdsflow_writeback_hook_token_rejections_total)
ATTACKS = {
    "alg-none": "alg-not-allowed",
    "hs256-signed-with-the-public-key": "alg-not-allowed",
    "expired": "expired",
    "not-yet-valid": "not-yet-valid",
    "wrong-aud": "wrong-audience",
    "replayed-jti": "replayed",
    "unknown-iss": "unknown-issuer",
    "jku-off-the-allowlist": "jku-not-allowed",
    "unknown-kid": "unknown-key",
    "tampered-payload": "bad-signature",
    "spec-expired-example-token": "jku-not-allowed",
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(audience: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "sub": "ehr-client",
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": str(uuid.uuid4()),
    }


def unsigned_token(audience: str) -> str:
    """`alg: none`, no signature (PyJWT writes it as such when asked)."""
    return jwt.encode(
        _claims(audience), "", algorithm="none", headers={"kid": es384_key().kid, "typ": "JWT"}
    )


def hmac_with_the_public_key(audience: str) -> str:
    """HS256 over the header and claims, keyed with the EHR's RSA public key as published (PEM):
    the key-confusion attack. PyJWT refuses to make one, so it is made by hand."""
    key = rs384_key()
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(audience)).encode())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def tampered(token: str) -> str:
    """A genuine token whose payload was changed after signing (another subject and `jti`)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(sub="attacker", jti=str(uuid.uuid4()))
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def example_pack() -> Path | None:
    pack = CONFORMANCE / EXAMPLE_PACK
    return pack if pack.is_dir() else None


@pytest.fixture(scope="module")
async def example_keys() -> AsyncIterator[dict[str, Any] | None]:
    """The spec example's issuer, trusted with its JWK Set served here (None without the pack:
    its case is then skipped by `conformance_dir`)."""
    pack = example_pack()
    if pack is None:
        yield None
        return
    key_set = json.loads((pack / "jwks-public.json").read_text())
    keys = Starlette(routes=[Route("/jwk_uri", lambda _: JSONResponse(key_set))])
    async with serve_app(keys) as keys_url:
        yield {
            "iss": EXAMPLE_ISSUER,
            "jwks_url": f"{keys_url}/jwk_uri",
            "token": (pack / "jwt-compact-EXAMPLE.txt").read_text().strip(),
        }


@pytest.fixture(scope="module")
async def matrix_writeback(
    kafka: KafkaEndpoint, pseudonym_key: str, example_keys: dict[str, Any] | None
) -> AsyncIterator[TrustingWriteback]:
    """One writeback for every case (each counts its own rejection, before and after)."""
    others = (
        ({"iss": example_keys["iss"], "jwks_url": example_keys["jwks_url"]},)
        if example_keys
        else ()
    )
    unique = f"matrix-{uuid.uuid4().hex[:10]}"
    async with trusting_writeback(kafka, pseudonym_key, unique, other_issuers=others) as running:
        yield running


Attack = Callable[[TrustingWriteback, httpx.AsyncClient], Awaitable[str]]


async def _replayed_jti(w: TrustingWriteback, http: httpx.AsyncClient) -> str:
    """A fresh, well-signed token reusing the `jti` of one the writeback already accepted."""
    jti = str(uuid.uuid4())
    first = await call(http, bearer(w.token(es384_key(), claims={"jti": jti})))
    assert first.status_code == 200, first.text
    return w.token(es384_key(), claims={"jti": jti, "sub": "another-client"})


def attack_token(attack: str, example: dict[str, Any] | None) -> Attack:
    key = es384_key()

    async def made(w: TrustingWriteback, http: httpx.AsyncClient) -> str:
        now = time.time()
        tokens: dict[str, Callable[[], str]] = {
            "alg-none": lambda: unsigned_token(w.audience),
            "hs256-signed-with-the-public-key": lambda: hmac_with_the_public_key(w.audience),
            "expired": lambda: w.token(key, issued_at=now - 600),
            "not-yet-valid": lambda: w.token(key, claims={"nbf": int(now) + 300}),
            "wrong-aud": lambda: w.token(key, aud="https://another-cds.example/cds-services/x"),
            "unknown-iss": lambda: hook_token(key, iss="https://unknown-ehr.test/", aud=w.audience),
            "jku-off-the-allowlist": lambda: w.token(
                key, header={"jku": "https://attacker.test/jwks.json"}
            ),
            "unknown-kid": lambda: w.token(key, header={"kid": "nobody-knows-this-kid"}),
            "tampered-payload": lambda: tampered(w.token(key)),
        }
        if attack == "replayed-jti":
            return await _replayed_jti(w, http)
        if attack == "spec-expired-example-token":
            assert example is not None
            return str(example["token"])
        return tokens[attack]()

    return made


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_each_attack_is_a_bare_401_counted_by_its_reason(
    matrix_writeback: TrustingWriteback,
    example_keys: dict[str, Any] | None,
    attack: str,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    if attack == "spec-expired-example-token":
        request.getfixturevalue("conformance_dir")  # skipped (or failed in CI) without the pack
    caplog.set_level(logging.DEBUG)
    reason = ATTACKS[attack]
    before = matrix_writeback.rejections(reason)
    async with httpx.AsyncClient(base_url=matrix_writeback.base_url, timeout=30) as http:
        token = await attack_token(attack, example_keys)(matrix_writeback, http)

        assert_bare_401(await call(http, bearer(token)))

    assert matrix_writeback.rejections(reason) == before + 1
    logged = [r for r in caplog.records if token in r.getMessage() + str(r.__dict__)]
    assert not logged, f"the {attack} token was logged"


def test_the_matrix_names_every_attack_of_the_issue() -> None:
    """The list of issue 10, item 3, so that a case dropped from ATTACKS fails here."""
    assert set(ATTACKS) == {
        "alg-none",
        "hs256-signed-with-the-public-key",
        "expired",
        "not-yet-valid",
        "wrong-aud",
        "replayed-jti",
        "unknown-iss",
        "jku-off-the-allowlist",
        "unknown-kid",
        "tampered-payload",
        "spec-expired-example-token",
    }
