"""Key pairs for SMART Backend Services tests, written as PEM files the way an operator keeps
them (private key mode 0600), with the public half as a JWK or PEM for the EHR's registration."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm


@dataclass(frozen=True)
class KeyPairFiles:
    private_key_file: Path
    public_key_file: Path
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    key_id: str

    def public_jwk(self) -> dict[str, Any]:
        if isinstance(self.public_key, rsa.RSAPublicKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(self.public_key))
        else:
            jwk = json.loads(ECAlgorithm.to_jwk(self.public_key))
        return {**jwk, "kid": self.key_id, "use": "sig"}


def write_key_pair(folder: Path, name: str, kind: str) -> KeyPairFiles:
    """`kind`: `ES384` (EC P-384), `RS384` (RSA 2048), or `ES256`/`RS1024` (unusable ones)."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "ES384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif kind == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "RS384":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "RS1024":
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (refused)
    else:
        raise ValueError(kind)
    folder.mkdir(parents=True, exist_ok=True)
    private_file = folder / f"{name}.key.pem"
    private_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_file.chmod(0o600)
    public_file = folder / f"{name}.pub.pem"
    public_file.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return KeyPairFiles(private_file, public_file, key.public_key(), f"{name}-key")
