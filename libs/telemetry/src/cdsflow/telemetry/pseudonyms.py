"""Keyed-HMAC pseudonyms for patient identifiers.

Raw patient ids never appear in spans, logs, metrics or Kafka keys; a `patient_key` does. The
key comes from configuration (`CDSFLOW_PSEUDONYM_KEY`), so the same patient always maps to the
same key inside one deployment, and nobody without the key can reverse or recompute it.
"""

from __future__ import annotations

import hashlib
import hmac

_KEY_HEX_CHARS = 32  # 128 bits: collision-free for any realistic patient population


class PatientKeyer:
    """Turns a patient reference into a stable, keyed pseudonym."""

    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise ValueError("the pseudonym key must be at least 16 characters")
        self._secret = secret.encode()

    def patient_key(self, patient_reference: str) -> str:
        """`Patient/123` (or a full URL ending in it) -> 32 hex characters."""
        normalized = normalize_patient_reference(patient_reference)
        digest = hmac.new(self._secret, normalized.encode(), hashlib.sha256).hexdigest()
        return digest[:_KEY_HEX_CHARS]


def normalize_patient_reference(reference: str) -> str:
    """Reduce `http://ehr/fhir/Patient/123/_history/2` and `Patient/123` to `Patient/123`."""
    parts = [p for p in reference.strip().split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) < 2 or parts[-2] != "Patient" or not parts[-1]:
        raise ValueError("not a Patient reference")
    return f"Patient/{parts[-1]}"
