"""The rules a CDS client's JWT must meet before a hook call is answered (CDS Hooks 2.0,
"Trusting CDS Clients"), as pure functions over the token's decoded parts. No I/O here:
fetching the issuer's keys and verifying the signature are in `cdsflow.writeback.client_auth`.

Every refusal is a `TokenRejected` with a fixed `reason` label for metrics; nothing from the
token is ever put into it.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cdsflow.fhir import is_loopback_host

# never `none`, never HMAC (HS256/384/512): a shared secret is not a client's identity
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
DEFAULT_ALGORITHMS = ("RS384", "ES384")
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")


class TokenRejected(Exception):
    """The hook call is not authenticated: 401. `reason` is one of a fixed set of labels."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TrustedIssuer:
    """An EHR allowed to call: its `iss`, where its JWKS is (`jwks_url`, configured out of
    band), and the URL prefixes that a token's `jku` header may name."""

    iss: str
    jwks_url: str | None = None
    jku_allowed: tuple[str, ...] = ()
    # the FHIR servers its calls may have the writeback fetch prefetch from (URL prefixes)
    fhir_servers: tuple[str, ...] = ()
    # the organisations (the `tenant` claim, CDS Hooks 2.0) it may speak for; empty: the
    # claim is not checked
    tenants: frozenset[str] = frozenset()

    def may_fetch_from(self, fhir_server: str) -> bool:
        """Whether `fhir_server` is at or below one of this issuer's allowed FHIR servers."""
        return any(_under(fhir_server, prefix) for prefix in self.fhir_servers)


def bearer_token(authorization: str | None) -> str:
    """The token of `Authorization: Bearer <token>`; `missing` or `malformed` otherwise."""
    if authorization is None or not authorization.strip():
        raise TokenRejected("missing")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or token.count(".") != 2:
        raise TokenRejected("malformed")
    return token


def check_header(header: dict[str, Any], algorithms: frozenset[str]) -> str:
    """`alg` allowed (never none/HMAC), `typ` JWT, a `kid`; returns the `kid`."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in ASYMMETRIC_ALGORITHMS:
        raise TokenRejected("alg-not-allowed")
    typ = header.get("typ")
    kid = header.get("kid")
    jku = header.get("jku")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise TokenRejected("malformed")
    if not isinstance(kid, str) or not kid or (jku is not None and not isinstance(jku, str)):
        raise TokenRejected("malformed")
    return kid


def trusted_issuer(claims: dict[str, Any], issuers: dict[str, TrustedIssuer]) -> TrustedIssuer:
    """The configured issuer named by the (not yet verified) `iss` claim."""
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss not in issuers:
        raise TokenRejected("unknown-issuer")
    return issuers[iss]


def jwks_url_for(header: dict[str, Any], issuer: TrustedIssuer) -> str:
    """Where the signing key is: the `jku` when it is on the issuer's allowlist, else the
    issuer's configured JWKS URL."""
    jku = header.get("jku")
    if jku is None:
        if issuer.jwks_url is None:
            raise TokenRejected("jku-not-allowed")
        return issuer.jwks_url
    if not isinstance(jku, str) or not any(_under(jku, prefix) for prefix in issuer.jku_allowed):
        raise TokenRejected("jku-not-allowed")
    return jku


def _under(url: str, prefix: str) -> bool:
    """`url` is `prefix` or below it, compared as URLs (scheme, host and port exactly)."""
    try:
        given, allowed = urlsplit(url), urlsplit(prefix)
        same_origin = (given.scheme, given.hostname, given.port) == (
            allowed.scheme,
            allowed.hostname,
            allowed.port,
        )
    except ValueError:
        return False
    if not same_origin or given.username is not None or given.query or given.fragment:
        return False
    base = allowed.path.rstrip("/")
    return given.path == allowed.path or given.path.startswith(base + "/")


def audiences(public_base_urls: tuple[str, ...], path: str) -> list[str]:
    """The `aud` values accepted for a call to `path`: each public base URL + the path."""
    return [base.rstrip("/") + path for base in public_base_urls]


def check_lifetime(claims: dict[str, Any], max_lifetime_s: float) -> float:
    """`exp` - `iat` within the configured maximum; returns `exp` (already checked as a
    number by the JWT library)."""
    exp, iat = _number(claims.get("exp")), _number(claims.get("iat"))
    if exp - iat > max_lifetime_s:
        raise TokenRejected("lifetime-too-long")
    return exp


def check_tenant(claims: dict[str, Any], issuer: TrustedIssuer) -> None:
    """When the issuer lists tenants, the token's `tenant` must be one of them (a token
    without one is refused too)."""
    if not issuer.tenants:
        return
    tenant = claims.get("tenant")
    if tenant is None:
        raise TokenRejected("tenant-missing")
    if not isinstance(tenant, str) or tenant not in issuer.tenants:
        raise TokenRejected("tenant-not-allowed")


def _number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TokenRejected("malformed")
    return float(value)


def is_https_or_loopback_http(url: str) -> bool:
    """Keys are fetched over https only; plain http only from a loopback host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if not parts.hostname or parts.username is not None:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback_host(parts.hostname)


@dataclass
class SeenTokens:
    """The `(iss, jti)` of each accepted token until it expires, so that a replay within the
    token's lifetime is refused. Bounded: past `max_tokens`, the entry that expires soonest
    is forgotten first. In this process only: in front of the claims topic
    (`domain/token_claims.py`), so that a replay to the same replica costs no round trip."""

    max_tokens: int
    _expiries: dict[tuple[str, str], float] = field(default_factory=dict)
    _by_expiry: list[tuple[float, tuple[str, str]]] = field(default_factory=list)

    def first_use(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        """Record the token; False when it was already seen and has not expired."""
        self._forget_expired(now)
        key = (iss, jti)
        if key in self._expiries:
            return False
        while len(self._expiries) >= self.max_tokens and self._by_expiry:
            _, oldest = heapq.heappop(self._by_expiry)
            self._expiries.pop(oldest, None)
        self._expiries[key] = expires_at
        heapq.heappush(self._by_expiry, (expires_at, key))
        return True

    def _forget_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] < now:
            _, key = heapq.heappop(self._by_expiry)
            self._expiries.pop(key, None)

    def __len__(self) -> int:
        return len(self._expiries)
