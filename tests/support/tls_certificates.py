"""A self-signed CA certificate written as the PEM file a Kafka cluster's CA Secret holds
(Strimzi's `ca.crt`), for tests that read `CDSFLOW_KAFKA_SSL_CA_FILE`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_ca_certificate(folder: Path, name: str = "ca.crt") -> Path:
    """A CA certificate (EC P-256, a day long) in `folder/name`; its key is not kept."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdsflow test Kafka CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path
