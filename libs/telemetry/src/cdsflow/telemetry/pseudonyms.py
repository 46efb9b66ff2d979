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
        """`Patient/123` -> 32 hex characters.

        Only the checked local form is accepted: which reference names which patient is
        decided once, by `cdsflow.fhir.local_patient_reference`, never guessed here.
        """
        kind, _, patient_id = patient_reference.partition("/")
        if kind != "Patient" or not patient_id or "/" in patient_id:
            raise ValueError("not a Patient reference of the form Patient/<id>")
        digest = hmac.new(self._secret, patient_reference.encode(), hashlib.sha256).hexdigest()
        return digest[:_KEY_HEX_CHARS]

    def keyed_digest(self, purpose: str, value: str) -> str:
        """A keyed pseudonym of something other than a patient (e.g. a hook token's issuer and
        `jti`), 32 hex characters; `purpose` keeps it apart from every patient key and from
        other purposes' digests of the same value."""
        if not purpose or "\x00" in purpose:
            raise ValueError("a digest's purpose is a non-empty label without NUL")
        message = purpose.encode() + b"\x00" + value.encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:_KEY_HEX_CHARS]
