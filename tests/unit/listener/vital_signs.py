"""FHIR resources for the listener's unit tests (R4, as SEKMET and real EHRs send them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cdsflow.runtime.story import vital_sign_observation

EHR_BASE_URL = "http://ehr.test/fhir"
CHANNEL_SECRET = "channel-secret-for-unit-tests-0123"
# Free text that must never come back in an answer, a log line or a span.
PATIENT_NAME = "Jane-Smith-1950"
EFFECTIVE = datetime(2025, 1, 2, 3, tzinfo=UTC)


def respiratory_rate(
    resource_id: str = "obs-rr-1",
    patient_id: str = "pat-1",
    version_id: str | None = "3",
    last_updated: str | None = "2025-01-02T03:04:05.678+00:00",
) -> dict[str, Any]:
    """A vital-sign Observation (respiratory rate, LOINC 9279-1) about `Patient/<patient_id>`."""
    resource = vital_sign_observation(
        f"Patient/{patient_id}", EFFECTIVE, "9279-1", value=22, ucum="/min"
    )
    resource["id"] = resource_id
    meta: dict[str, str] = {}
    if version_id is not None:
        meta["versionId"] = version_id
    if last_updated is not None:
        meta["lastUpdated"] = last_updated
    if meta:
        resource["meta"] = meta
    return resource


def as_body(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource).encode()
