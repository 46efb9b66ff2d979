"""The SMART client assertion: its claims, header and algorithm, and the keys refused."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cdsflow.fhir import UnusableSigningKey, client_assertion, load_signing_key
from tests.support.signing_keys import write_key_pair

TOKEN_URL = "https://ehr.test/oauth2/token"


@pytest.mark.parametrize("kind", ["ES384", "RS384"])
def test_an_assertion_carries_the_smart_claims_signed_with_the_keys_algorithm(
    tmp_path: Path, kind: str
) -> None:
    pair = write_key_pair(tmp_path, "cdsflow", kind)
    signing_key = load_signing_key(pair.private_key_file, "kid-1")
    now = time.time()

    first = client_assertion(signing_key, "cdsflow-client", TOKEN_URL, now)
    second = client_assertion(signing_key, "cdsflow-client", TOKEN_URL, now)

    assert signing_key.algorithm == kind
    header = jwt.get_unverified_header(first)
    assert header == {"alg": kind, "kid": "kid-1", "typ": "JWT"}
    claims = jwt.decode(
        first,
        pair.public_key,
        algorithms=[kind],
        audience=TOKEN_URL,
        options={"require": ["iss", "sub", "aud", "exp", "jti"]},
    )
    assert claims["iss"] == claims["sub"] == "cdsflow-client"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - now <= 300
    assert "iat" not in claims
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_an_assertion_signed_by_another_key_does_not_verify(tmp_path: Path) -> None:
    ours = load_signing_key(write_key_pair(tmp_path, "ours", "ES384").private_key_file, "k")
    theirs = write_key_pair(tmp_path, "theirs", "ES384")

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            client_assertion(ours, "c", TOKEN_URL, time.time()),
            theirs.public_key,
            algorithms=["ES384"],
            audience=TOKEN_URL,
        )


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("ES256", r"neither RSA \(RS384\) nor EC P-384"), ("RS1024", "has 1024 bits")],
)
def test_keys_of_other_algorithms_or_too_short_are_refused(
    tmp_path: Path, kind: str, reason: str
) -> None:
    pair = write_key_pair(tmp_path, "weak", kind)
    with pytest.raises(UnusableSigningKey, match=reason):
        load_signing_key(pair.private_key_file, "k")


def test_a_public_key_an_encrypted_key_or_a_missing_file_is_refused_without_its_content(
    tmp_path: Path,
) -> None:
    pair = write_key_pair(tmp_path, "k", "ES384")
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )

    for path in (pair.public_key_file, encrypted):
        with pytest.raises(UnusableSigningKey, match="does not hold an unencrypted PEM") as err:
            load_signing_key(path, "k")
        assert "BEGIN" not in str(err.value)
    with pytest.raises(UnusableSigningKey, match="cannot read the private key file"):
        load_signing_key(tmp_path / "absent.pem", "k")
