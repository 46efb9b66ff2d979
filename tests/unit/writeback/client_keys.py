"""Real signing keys (ES384, RS384) made in the test, and CDS Hooks JWTs signed with them by
PyJWT, the way an EHR signs its hook calls; each part can be spoiled for a rejection test."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://ehr.example.org/"
PUBLIC_BASE_URL = "https://cds.example.org"
SERVICE_PATH = "/cds-services/cdsflow-deterioration"
AUDIENCE = PUBLIC_BASE_URL + SERVICE_PATH

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK, as the EHR publishes it in its JWK Set."""
        public = self.private.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


@cache
def es384_key(kid: str = "ehr-es384") -> SigningKey:
    return SigningKey(kid, "ES384", ec.generate_private_key(ec.SECP384R1()))


@cache
def rs384_key(kid: str = "ehr-rs384") -> SigningKey:
    return SigningKey(kid, "RS384", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.jwk() for key in keys]}


def hook_token(
    key: SigningKey,
    *,
    iss: str = ISSUER,
    aud: str | list[str] = AUDIENCE,
    issued_at: float | None = None,
    lifetime_s: float = 300,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    without: tuple[str, ...] = (),
) -> str:
    """A CDS Hooks JWT signed by `key`; `header`/`claims` override, `without` drops claims."""
    now = int(time.time() if issued_at is None else issued_at)
    payload: dict[str, Any] = {
        "iss": iss,
        "sub": "ehr-client",
        "aud": aud,
        "iat": now,
        "exp": now + int(lifetime_s),
        "jti": str(uuid.uuid4()),
        **(claims or {}),
    }
    for name in without:
        payload.pop(name, None)
    headers = {"typ": "JWT", "kid": key.kid, **(header or {})}
    if headers["kid"] is None:
        del headers["kid"]  # (a `typ` of None is dropped by PyJWT itself)
    return jwt.encode(payload, key.private, algorithm=key.alg, headers=headers)


def bearer(token: str) -> str:
    return f"Bearer {token}"
