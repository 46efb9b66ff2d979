"""Authenticating the EHR that calls a hook: its JWT, verified against its JWKS.

The rules themselves are pure (`domain/client_tokens.py`); here are the parts with I/O and
state: the JWKS of each trusted issuer, fetched over HTTP and cached, and the tokens already
seen: first in this process, then, across replicas, claimed on the claims topic
(`token_claims.py`). The token is never logged, and no refusal says which rule failed to the
caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt

from cdsflow.writeback.domain.client_tokens import (
    REQUIRED_CLAIMS,
    SeenTokens,
    TokenRejected,
    TrustedIssuer,
    audiences,
    bearer_token,
    check_header,
    check_lifetime,
    check_tenant,
    jwks_url_for,
    trusted_issuer,
)

logger = logging.getLogger(__name__)

# a JWK Set is a few kilobytes; more is not a key set
MAX_JWKS_BYTES = 256 * 1024
# key sets kept at once (the configured ones, plus those named by allowed `jku`s)
MAX_KEY_SETS = 64
# key objects loaded from JWKs, kept for reuse (a rotated key set makes new ones)
MAX_PUBLIC_KEYS = 256


@dataclass
class _KeySet:
    keys: dict[str, dict[str, Any]]
    fetched_at: float


class JwksCache:
    """Each JWKS URL's keys by `kid`, kept for `ttl_s`. An unknown `kid` (a rotated key)
    re-fetches the set, at most once per `refetch_interval_s` per URL. When a re-fetch fails,
    the keys already held are used; with none held, the call is refused (`jwks-unavailable`).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        ttl_s: float,
        refetch_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl_s = ttl_s
        self._refetch_interval_s = refetch_interval_s
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._attempted_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches = 0

    async def signing_key(self, jwks_url: str, kid: str) -> dict[str, Any]:
        """The JWK with this `kid` at `jwks_url`; `unknown-key` or `jwks-unavailable`."""
        lock = self._locks.setdefault(jwks_url, asyncio.Lock())
        async with lock:
            held = self._sets.get(jwks_url)
            if self._should_fetch(jwks_url, held, kid):
                held = await self._refresh(jwks_url, held)
        if held is None:
            raise TokenRejected("jwks-unavailable")
        key = held.keys.get(kid)
        if key is None:
            raise TokenRejected("unknown-key")
        return key

    def _should_fetch(self, jwks_url: str, held: _KeySet | None, kid: str) -> bool:
        now = self._clock()
        attempted = self._attempted_at.get(jwks_url)
        recently_tried = attempted is not None and now - attempted < self._refetch_interval_s
        if held is None or kid not in held.keys:
            return not recently_tried
        return now - held.fetched_at >= self._ttl_s and not recently_tried

    async def _refresh(self, jwks_url: str, held: _KeySet | None) -> _KeySet | None:
        self._attempted_at[jwks_url] = self._clock()
        self.fetches += 1
        try:
            keys = await self._fetch(jwks_url)
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning(
                "could not fetch a trusted issuer's JWKS", extra={"error_type": type(exc).__name__}
            )
            return held
        fresh = _KeySet(keys, self._clock())
        if jwks_url not in self._sets and len(self._sets) >= MAX_KEY_SETS:
            oldest = min(self._sets, key=lambda url: self._sets[url].fetched_at)
            del self._sets[oldest]
        self._sets[jwks_url] = fresh
        return fresh

    async def _fetch(self, jwks_url: str) -> dict[str, dict[str, Any]]:
        body = bytearray()
        async with self._http.stream(
            "GET", jwks_url, headers={"Accept": "application/json"}, follow_redirects=False
        ) as response:
            if response.status_code != 200:
                raise ValueError(f"JWKS answered {response.status_code}")
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError("JWKS too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWK Set")
        return {
            key["kid"]: key
            for key in document["keys"]
            if isinstance(key, dict) and isinstance(key.get("kid"), str)
        }


class ReplicaClaims(Protocol):
    """The tokens' first use across replicas (`token_claims.TokenClaims`)."""

    async def first_use(self, iss: str, jti: str, expires_at: float) -> bool: ...


@dataclass(frozen=True)
class ClientTokenPolicy:
    """What a hook call's JWT must be (see `Settings` for each value's meaning)."""

    issuers: dict[str, TrustedIssuer]
    algorithms: frozenset[str]
    public_base_urls: tuple[str, ...]
    skew_s: float
    max_lifetime_s: float


class ClientAuthenticator:
    """Verifies `Authorization: Bearer <JWT>` of a call to a CDS service path."""

    def __init__(
        self,
        policy: ClientTokenPolicy,
        keys: JwksCache,
        seen: SeenTokens,
        clock: Callable[[], float] = time.time,
        *,
        claims: ReplicaClaims | None = None,
    ) -> None:
        self._policy = policy
        self._keys = keys
        self._seen = seen
        self._claims = claims
        self._clock = clock
        self._public_keys: dict[tuple[str, str], jwt.PyJWK] = {}

    def trusted_issuer(self, iss: str) -> TrustedIssuer | None:
        """The configuration of an issuer that `authenticate` let in."""
        return self._policy.issuers.get(iss)

    async def authenticate(self, authorization: str | None, service_path: str) -> str:
        """The caller's `iss` when the token is good; else `TokenRejected(reason)`, or
        `ClaimUnconfirmed` when whether it is a replay cannot be known in time (503)."""
        policy = self._policy
        token = bearer_token(authorization)
        try:
            # header and claims read once (the signature is verified below, with the key
            # that the header and the issuer select)
            decoded = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRejected("malformed") from None
        header, unverified = decoded["header"], decoded["payload"]
        kid = check_header(header, policy.algorithms)
        issuer = trusted_issuer(unverified, policy.issuers)
        jwk = await self._keys.signing_key(jwks_url_for(header, issuer), kid)
        claims = self._verified_claims(token, str(header["alg"]), jwk, issuer, service_path)
        expires_at = check_lifetime(claims, policy.max_lifetime_s) + policy.skew_s
        check_tenant(claims, issuer)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenRejected("malformed")
        # this process first (no round trip), then every replica through the claims topic
        if not self._seen.first_use(issuer.iss, jti, expires_at, self._clock()):
            raise TokenRejected("replayed")
        if self._claims is not None and not await self._claims.first_use(
            issuer.iss, jti, expires_at
        ):
            raise TokenRejected("replayed")
        return issuer.iss

    def _public_key(self, jwk: dict[str, Any], alg: str) -> jwt.PyJWK:
        """The JWK as a key object, kept while its JWK is held (loading an EC or RSA key
        costs more than verifying a signature with it)."""
        cache_key = (alg, json.dumps(jwk, sort_keys=True))
        key = self._public_keys.get(cache_key)
        if key is None:
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError):
                raise TokenRejected("bad-signature") from None
            if len(self._public_keys) >= MAX_PUBLIC_KEYS:
                self._public_keys.clear()
            self._public_keys[cache_key] = key
        return key

    def _verified_claims(
        self, token: str, alg: str, jwk: dict[str, Any], issuer: TrustedIssuer, path: str
    ) -> dict[str, Any]:
        if jwk.get("alg") not in (None, alg) or jwk.get("use") not in (None, "sig"):
            raise TokenRejected("bad-signature")
        key = self._public_key(jwk, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audiences(self._policy.public_base_urls, path),
                issuer=issuer.iss,
                leeway=self._policy.skew_s,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("not-yet-valid") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected("wrong-audience") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad-signature") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("unknown-issuer") from None
        except jwt.PyJWTError:
            raise TokenRejected("malformed") from None
        return claims
