"""The signed client assertion of SMART Backend Services (`private_key_jwt`).

cdsflow proves who it is to the EHR's token endpoint with a short JWT signed by its private
key: `iss` = `sub` = the client id, `aud` = the token URL, a fresh `jti`, `exp` at most five
minutes ahead; header `alg` (RS384 or ES384, from the key), `kid`, `typ: JWT`. No `iat`: it
is not required, and a token endpoint whose clock lags ours could refuse one "in the future".
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART: `exp` no more than five minutes in the future; a little less leaves room for skew
ASSERTION_LIFETIME_S = 240
MIN_RSA_KEY_BITS = 2048


class UnusableSigningKey(ValueError):
    """The private key file cannot sign client assertions (says why, never what it holds)."""


@dataclass(frozen=True)
class SigningKey:
    """A private key that signs client assertions, its algorithm and the `kid` the EHR knows
    its public half by."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    algorithm: str
    key_id: str


def load_signing_key(path: Path, key_id: str) -> SigningKey:
    """An unencrypted PEM private key (PKCS#8 or traditional): RSA of 2048 bits or more signs
    RS384, EC P-384 signs ES384; anything else is refused."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise UnusableSigningKey(
            f"cannot read the private key file {path} ({type(exc).__name__})"
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise UnusableSigningKey(f"{path} does not hold an unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_KEY_BITS:
            raise UnusableSigningKey(
                f"the RSA key in {path} has {key.key_size} bits; at least {MIN_RSA_KEY_BITS}"
            )
        return SigningKey(key, "RS384", key_id)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP384R1):
        return SigningKey(key, "ES384", key_id)
    raise UnusableSigningKey(
        f"the key in {path} is neither RSA (RS384) nor EC P-384 (ES384), "
        "the algorithms of SMART Backend Services"
    )


def client_assertion(signing_key: SigningKey, client_id: str, token_url: str, now: float) -> str:
    """The signed JWT for one token request (`now` in seconds since the epoch)."""
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": int(now) + ASSERTION_LIFETIME_S,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(
        claims,
        signing_key.private_key,
        algorithm=signing_key.algorithm,
        headers={"kid": signing_key.key_id, "typ": "JWT"},
    )
