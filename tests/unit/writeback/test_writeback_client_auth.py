"""Every rule of a hook call's JWT, with real ES384/RS384 keys and tokens signed by PyJWT.

The issuer's JWK Set is served by an in-process HTTP transport here (no network); over a
real loopback server in tests/integration/test_writeback_client_auth.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cdsflow.writeback.client_auth import ClientAuthenticator, ClientTokenPolicy, JwksCache
from cdsflow.writeback.domain.client_tokens import SeenTokens, TokenRejected, TrustedIssuer
from cdsflow.writeback.domain.token_claims import ClaimUnconfirmed

from .client_keys import (
    AUDIENCE,
    ISSUER,
    PUBLIC_BASE_URL,
    SERVICE_PATH,
    SigningKey,
    bearer,
    es384_key,
    hook_token,
    jwks,
    rs384_key,
)

JWKS_URL = "https://ehr.example.org/jwks.json"
JKU_BASE = "https://keys.ehr.example.org/tenants/"
SKEW_S = 30.0


@dataclass
class KeyServer:
    """The EHR's JWK Set endpoint(s): what they serve, and how often they were asked."""

    sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: int = 200
    requests: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requests.append(url)
        if self.status != 200 or url not in self.sets:
            return httpx.Response(self.status if self.status != 200 else 404)
        return httpx.Response(200, json=self.sets[url])


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Verifier:
    authenticator: ClientAuthenticator
    keys: KeyServer
    clock: Clock

    async def accepts(self, token: str, path: str = SERVICE_PATH) -> str:
        return await self.authenticator.authenticate(bearer(token), path)

    async def reason(self, authorization: str | None, path: str = SERVICE_PATH) -> str:
        with pytest.raises(TokenRejected) as rejected:
            await self.authenticator.authenticate(authorization, path)
        return rejected.value.reason


@pytest.fixture
async def verifier() -> AsyncIterator[Verifier]:
    keys = KeyServer(sets={JWKS_URL: jwks(es384_key(), rs384_key())})
    clock = Clock()
    policy = ClientTokenPolicy(
        issuers={ISSUER: TrustedIssuer(ISSUER, JWKS_URL, (JKU_BASE,))},
        algorithms=frozenset({"ES384", "RS384"}),
        public_base_urls=(PUBLIC_BASE_URL,),
        skew_s=SKEW_S,
        max_lifetime_s=600,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(keys.handle)) as http:
        cache = JwksCache(http, ttl_s=300, refetch_interval_s=10, clock=clock)
        authenticator = ClientAuthenticator(policy, cache, SeenTokens(1000))
        yield Verifier(authenticator, keys, clock)


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def claims_now(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "jti": "j", **overrides}


# ---- accepted ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", [es384_key(), rs384_key()], ids=["ES384", "RS384"])
async def test_a_token_signed_by_a_trusted_ehr_is_accepted(
    verifier: Verifier, key: SigningKey
) -> None:
    assert await verifier.accepts(hook_token(key)) == ISSUER
    assert verifier.keys.requests == [JWKS_URL]


async def test_aud_may_be_an_array_holding_this_endpoint(verifier: Verifier) -> None:
    token = hook_token(es384_key(), aud=["https://other.example.org/x", AUDIENCE])
    assert await verifier.accepts(token) == ISSUER


async def test_an_expiry_within_the_clock_skew_is_accepted(verifier: Verifier) -> None:
    token = hook_token(es384_key(), issued_at=time.time() - 310, lifetime_s=300)
    assert await verifier.accepts(token) == ISSUER


async def test_the_keys_are_fetched_once_for_many_calls(verifier: Verifier) -> None:
    for _ in range(5):
        await verifier.accepts(hook_token(es384_key()))
    assert verifier.keys.requests == [JWKS_URL]


# ---- the Authorization header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("Basic dXNlcjpwYXNz", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer not-a-jwt", "malformed"),
        ("Bearer a.b.c", "malformed"),
        ("Bearer a.b.c d", "malformed"),
    ],
)
async def test_a_missing_or_malformed_bearer_token_is_refused(
    verifier: Verifier, authorization: str | None, reason: str
) -> None:
    assert await verifier.reason(authorization) == reason


# ---- the header: alg, typ, kid -----------------------------------------------------------------


async def test_alg_none_is_refused(verifier: Verifier) -> None:
    token = unsigned({"alg": "none", "typ": "JWT", "kid": es384_key().kid}, claims_now())
    assert await verifier.reason(bearer(token)) == "alg-not-allowed"


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_is_refused_even_keyed_with_the_public_key(verifier: Verifier, alg: str) -> None:
    # the classic confusion attack: public key material as an HMAC secret
    secret = es384_key().jwk()["x"].encode()
    token = jwt.encode(claims_now(), secret, algorithm=alg, headers={"kid": es384_key().kid})
    assert await verifier.reason(bearer(token)) == "alg-not-allowed"
    assert verifier.keys.requests == []


async def test_an_asymmetric_algorithm_not_configured_is_refused(verifier: Verifier) -> None:
    key = SigningKey("ehr-es256", "ES256", ec.generate_private_key(ec.SECP256R1()))
    verifier.keys.sets[JWKS_URL]["keys"].append(key.jwk())
    assert await verifier.reason(bearer(hook_token(key))) == "alg-not-allowed"


@pytest.mark.parametrize(
    "header", [{"typ": None}, {"typ": "at+jwt"}, {"kid": None}, {"kid": ""}, {"jku": 7}]
)
async def test_typ_jwt_and_a_kid_are_required(verifier: Verifier, header: dict[str, Any]) -> None:
    token = hook_token(es384_key(), header=header)
    assert await verifier.reason(bearer(token)) == "malformed"


# ---- issuer, jku, keys --------------------------------------------------------------------------


async def test_an_issuer_not_on_the_allowlist_is_refused(verifier: Verifier) -> None:
    token = hook_token(es384_key(), iss="https://evil.example.org/")
    assert await verifier.reason(bearer(token)) == "unknown-issuer"
    assert verifier.keys.requests == []


async def test_a_jku_under_an_allowed_prefix_is_where_the_key_comes_from(
    verifier: Verifier,
) -> None:
    jku = JKU_BASE + "t-1/jwks.json"
    other = SigningKey("tenant-key", "ES384", ec.generate_private_key(ec.SECP384R1()))
    verifier.keys.sets[jku] = jwks(other)
    assert await verifier.accepts(hook_token(other, header={"jku": jku})) == ISSUER
    assert verifier.keys.requests == [jku]


@pytest.mark.parametrize(
    "jku",
    [
        "https://evil.example.org/tenants/t-1/jwks.json",
        "https://keys.ehr.example.org/other/jwks.json",
        "https://keys.ehr.example.org/tenants-evil/jwks.json",
        "http://keys.ehr.example.org/tenants/t-1/jwks.json",
        "https://keys.ehr.example.org:8443/tenants/t-1/jwks.json",
        "https://user@keys.ehr.example.org/tenants/t-1/jwks.json",
    ],
)
async def test_a_jku_off_the_allowlist_is_refused_unfetched(verifier: Verifier, jku: str) -> None:
    token = hook_token(es384_key(), header={"jku": jku})
    assert await verifier.reason(bearer(token)) == "jku-not-allowed"
    assert verifier.keys.requests == []


async def test_a_signature_by_another_key_with_a_known_kid_is_refused(verifier: Verifier) -> None:
    impostor = SigningKey(es384_key().kid, "ES384", ec.generate_private_key(ec.SECP384R1()))
    assert await verifier.reason(bearer(hook_token(impostor))) == "bad-signature"


async def test_a_tampered_payload_is_refused(verifier: Verifier) -> None:
    header, _, signature = hook_token(es384_key()).split(".")
    forged = unsigned({}, claims_now(sub="someone-else")).split(".")[1]
    assert await verifier.reason(bearer(f"{header}.{forged}.{signature}")) == "bad-signature"


async def test_a_key_published_for_another_algorithm_is_refused(verifier: Verifier) -> None:
    # the RS384 key's kid in an ES384 token
    token = hook_token(es384_key(), header={"kid": rs384_key().kid})
    assert await verifier.reason(bearer(token)) == "bad-signature"


async def test_a_rotated_key_is_fetched_once_then_unknown_kids_are_bounded(
    verifier: Verifier,
) -> None:
    await verifier.accepts(hook_token(es384_key()))
    rotated = SigningKey("ehr-es384-2", "ES384", ec.generate_private_key(ec.SECP384R1()))
    verifier.keys.sets[JWKS_URL] = jwks(rotated)
    verifier.clock.now += 11

    assert await verifier.accepts(hook_token(rotated)) == ISSUER
    assert len(verifier.keys.requests) == 2

    # unknown kids within the re-fetch interval do not reach the EHR again
    for index in range(5):
        stranger = hook_token(rotated, header={"kid": f"unknown-{index}"})
        assert await verifier.reason(bearer(stranger)) == "unknown-key"
    assert len(verifier.keys.requests) == 2
    verifier.clock.now += 11
    assert await verifier.reason(bearer(hook_token(rotated, header={"kid": "x"}))) == "unknown-key"
    assert len(verifier.keys.requests) == 3


async def test_the_key_set_is_refetched_after_its_ttl(verifier: Verifier) -> None:
    await verifier.accepts(hook_token(es384_key()))
    verifier.clock.now += 301
    await verifier.accepts(hook_token(es384_key()))
    assert len(verifier.keys.requests) == 2


async def test_keys_unavailable_are_refused_and_held_keys_outlive_a_failed_refresh(
    verifier: Verifier,
) -> None:
    verifier.keys.status = 503
    assert await verifier.reason(bearer(hook_token(es384_key()))) == "jwks-unavailable"
    # a failed fetch is not retried at once for every call
    assert await verifier.reason(bearer(hook_token(es384_key()))) == "jwks-unavailable"
    assert len(verifier.keys.requests) == 1

    verifier.keys.status = 200
    verifier.clock.now += 11
    await verifier.accepts(hook_token(es384_key()))
    verifier.keys.status = 503
    verifier.clock.now += 301
    assert await verifier.accepts(hook_token(es384_key())) == ISSUER
    assert len(verifier.keys.requests) == 3


# ---- claims: aud, times, jti ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        PUBLIC_BASE_URL + "/cds-services",
        PUBLIC_BASE_URL + "/cds-services/another-service",
        "https://evil.example.org" + SERVICE_PATH,
        AUDIENCE + "/",
    ],
)
async def test_a_token_for_another_endpoint_is_refused(verifier: Verifier, aud: str) -> None:
    assert await verifier.reason(bearer(hook_token(es384_key(), aud=aud))) == "wrong-audience"


async def test_an_expired_token_is_refused(verifier: Verifier) -> None:
    token = hook_token(es384_key(), issued_at=time.time() - 400, lifetime_s=300)
    assert await verifier.reason(bearer(token)) == "expired"


async def test_a_token_issued_in_the_future_is_refused(verifier: Verifier) -> None:
    token = hook_token(es384_key(), issued_at=time.time() + 120)
    assert await verifier.reason(bearer(token)) == "not-yet-valid"


async def test_a_token_not_valid_before_a_later_time_is_refused(verifier: Verifier) -> None:
    token = hook_token(es384_key(), claims={"nbf": int(time.time()) + 120})
    assert await verifier.reason(bearer(token)) == "not-yet-valid"


async def test_a_token_living_longer_than_allowed_is_refused(verifier: Verifier) -> None:
    token = hook_token(es384_key(), lifetime_s=3600)
    assert await verifier.reason(bearer(token)) == "lifetime-too-long"


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "iat", "jti"])
async def test_every_required_claim_must_be_present(verifier: Verifier, claim: str) -> None:
    reason = await verifier.reason(bearer(hook_token(es384_key(), without=(claim,))))
    assert reason == ("unknown-issuer" if claim == "iss" else "malformed")


async def test_a_replayed_token_is_refused_within_its_lifetime(verifier: Verifier) -> None:
    token = hook_token(es384_key())
    await verifier.accepts(token)
    assert await verifier.reason(bearer(token)) == "replayed"
    # a new jti is a new call
    await verifier.accepts(hook_token(es384_key()))


# ---- the seen-tokens store ---------------------------------------------------------------------


def test_a_seen_token_is_forgotten_once_expired() -> None:
    seen = SeenTokens(max_tokens=10)
    assert seen.first_use(ISSUER, "a", expires_at=100, now=50)
    assert not seen.first_use(ISSUER, "a", expires_at=100, now=99)
    assert seen.first_use("https://other.example.org/", "a", expires_at=100, now=99)
    assert seen.first_use(ISSUER, "a", expires_at=200, now=101)


def test_the_seen_tokens_are_bounded_forgetting_the_soonest_expiring() -> None:
    seen = SeenTokens(max_tokens=3)
    for jti, expiry in (("a", 300), ("b", 100), ("c", 200), ("d", 400)):
        assert seen.first_use(ISSUER, jti, expires_at=expiry, now=0)
    assert len(seen) == 3
    assert seen.first_use(ISSUER, "b", expires_at=100, now=0)  # forgotten: accepted again
    assert not seen.first_use(ISSUER, "d", expires_at=400, now=0)


async def test_the_token_is_never_logged(
    verifier: Verifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier.keys.status = 500
    token = hook_token(es384_key())
    await verifier.reason(bearer(token))
    assert caplog.records  # the failed fetch is logged ...
    assert not [r for r in caplog.records if token.split(".")[1] in r.getMessage()]


# ---- the tenant claim ------------------------------------------------------------------------


@dataclass
class ClaimsTopic:
    """Stands in for the claims topic: the keys claimed by every replica, in order."""

    claimed: list[tuple[str, str]] = field(default_factory=list)
    unconfirmed: bool = False

    async def first_use(self, iss: str, jti: str, expires_at: float) -> bool:
        if self.unconfirmed:
            raise ClaimUnconfirmed("TimeoutError")
        first = (iss, jti) not in self.claimed
        self.claimed.append((iss, jti))
        return first


@contextlib.asynccontextmanager
async def replica(
    claims: ClaimsTopic, tenants: frozenset[str] = frozenset()
) -> AsyncIterator[ClientAuthenticator]:
    keys = KeyServer(sets={JWKS_URL: jwks(es384_key(), rs384_key())})
    policy = ClientTokenPolicy(
        issuers={ISSUER: TrustedIssuer(ISSUER, JWKS_URL, tenants=tenants)},
        algorithms=frozenset({"ES384", "RS384"}),
        public_base_urls=(PUBLIC_BASE_URL,),
        skew_s=SKEW_S,
        max_lifetime_s=600,
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(keys.handle)) as http:
        cache = JwksCache(http, ttl_s=300, refetch_interval_s=10)
        yield ClientAuthenticator(policy, cache, SeenTokens(1000), claims=claims)


async def reason_of(authenticator: ClientAuthenticator, token: str) -> str:
    with pytest.raises(TokenRejected) as rejected:
        await authenticator.authenticate(bearer(token), SERVICE_PATH)
    return rejected.value.reason


async def test_an_issuer_listing_tenants_accepts_only_their_tokens() -> None:
    claims = ClaimsTopic()
    async with replica(claims, frozenset({"north-hospital", "south-clinic"})) as authenticator:
        for tenant in ("north-hospital", "south-clinic"):
            token = hook_token(es384_key(), claims={"tenant": tenant})
            assert await authenticator.authenticate(bearer(token), SERVICE_PATH) == ISSUER

        assert await reason_of(authenticator, hook_token(es384_key())) == "tenant-missing"
        for other in ("east-hospital", "North-Hospital", "", ["north-hospital"], 7):
            token = hook_token(es384_key(), claims={"tenant": other})
            assert await reason_of(authenticator, token) == "tenant-not-allowed"
    # a refused token is never claimed: only the two accepted ones are on the topic
    assert len(claims.claimed) == 2


async def test_an_issuer_without_tenants_does_not_look_at_the_claim() -> None:
    async with replica(ClaimsTopic()) as authenticator:
        for token in (hook_token(es384_key()), hook_token(es384_key(), claims={"tenant": "x"})):
            assert await authenticator.authenticate(bearer(token), SERVICE_PATH) == ISSUER


# ---- the replay check across replicas ----------------------------------------------------------


async def test_a_token_claimed_by_another_replica_is_a_replay() -> None:
    claims = ClaimsTopic()  # shared, as the topic is
    token = hook_token(es384_key())
    async with replica(claims) as first, replica(claims) as second:
        assert await first.authenticate(bearer(token), SERVICE_PATH) == ISSUER
        assert await reason_of(second, token) == "replayed"
        assert await second.authenticate(bearer(hook_token(es384_key())), SERVICE_PATH) == ISSUER


async def test_a_replay_to_the_same_replica_is_refused_before_any_claim() -> None:
    claims = ClaimsTopic()
    token = hook_token(es384_key())
    async with replica(claims) as authenticator:
        await authenticator.authenticate(bearer(token), SERVICE_PATH)
        assert await reason_of(authenticator, token) == "replayed"
    assert len(claims.claimed) == 1


async def test_an_unconfirmed_claim_is_never_an_accepted_token() -> None:
    async with replica(ClaimsTopic(unconfirmed=True)) as authenticator:
        with pytest.raises(ClaimUnconfirmed):
            await authenticator.authenticate(bearer(hook_token(es384_key())), SERVICE_PATH)
