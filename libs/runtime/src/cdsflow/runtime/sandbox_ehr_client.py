"""cdsflow playing the EHR that calls its hooks, in the embedded runtime only.

`cdsflow up`/`demo` make an ES384 key pair, serve its public half as a JWK Set on loopback,
and configure the writeback to trust that one issuer. Hook calls from the demo, the tests,
the bench and `cdsflow hook` are signed by `sign_hook_token`, as CDS Hooks 2.0 asks of an EHR.
The private key is written to the work folder (mode 0600) so that `cdsflow hook` can sign too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cdsflow.runtime.loopback_server import LoopbackServer

ALGORITHM = "ES384"
JWKS_PATH = "/.well-known/jwks.json"
# CDS Hooks recommends tokens that expire within 5 minutes
TOKEN_LIFETIME_S = 300
KEY_FILE_NAME = "sandbox-ehr-client-key.pem"


@dataclass(frozen=True)
class HookSigningKey:
    """The sandbox EHR's private key, its `kid` and the `iss` that it signs as."""

    private_key: ec.EllipticCurvePrivateKey
    issuer: str

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public key."""
        jwk = self.public_jwk()
        canonical = json.dumps(
            {name: jwk[name] for name in ("crv", "kty", "x", "y")}, separators=(",", ":")
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return jwk

    def jwks(self) -> dict[str, Any]:
        """The JWK Set that the writeback fetches."""
        return {"keys": [{**self.public_jwk(), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}]}

    def save(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM, readable by its owner only."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)

    @classmethod
    def load(cls, path: Path, issuer: str) -> HookSigningKey:
        private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(private_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC private key")
        return cls(private_key, issuer)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def sign_hook_token(key: HookSigningKey, audience: str, now: float | None = None) -> str:
    """The JWT of one hook call to `audience` (the service's URL): `iss` the sandbox EHR,
    `sub` its client id, 5 minutes of life, a fresh `jti`. The one signing function."""
    issued_at = int(time.time() if now is None else now)
    claims = {
        "iss": key.issuer,
        "sub": "cdsflow-sandbox-ehr",
        "aud": audience,
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME_S,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(
        claims, key.private_key, algorithm=ALGORITHM, headers={"typ": "JWT", "kid": key.kid}
    )


async def call_service(
    http: httpx.AsyncClient, service_url: str, request: dict[str, Any], key: HookSigningKey
) -> httpx.Response:
    """POST a hook request to a CDS service, signed as the sandbox EHR."""
    token = sign_hook_token(key, service_url)
    return await http.post(service_url, json=request, headers={"Authorization": f"Bearer {token}"})


class SandboxEhrClient:
    """The key pair and its JWK Set served on loopback; `start()` returns the signing key."""

    def __init__(self) -> None:
        self._private_key = new_private_key()
        self._server: LoopbackServer | None = None
        self.jwks_url = ""

    def start(self, key_path: Path) -> HookSigningKey:
        unsigned = HookSigningKey(self._private_key, issuer="")
        key_set = unsigned.jwks()

        async def serve_jwks(request: Request) -> JSONResponse:
            return JSONResponse(key_set)

        app = Starlette(routes=[Route(JWKS_PATH, serve_jwks)])
        self._server = LoopbackServer(app, "sandbox-ehr-jwks")
        base_url = self._server.start()
        self.jwks_url = base_url + JWKS_PATH
        key = HookSigningKey(self._private_key, issuer=base_url)
        key.save(key_path)
        return key

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
