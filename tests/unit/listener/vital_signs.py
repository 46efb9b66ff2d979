"""FHIR resources for the listener's unit tests (R4, as SEKMET and real EHRs send them)."""

from __future__ import annotations

import json
from typing import Any

EHR_BASE_URL = "http://ehr.test/fhir"
CHANNEL_SECRET = "channel-secret-for-unit-tests-0123"
# Free text that must never come back in an answer, a log line or a span.
PATIENT_NAME = "Jane-Smith-1950"


def respiratory_rate(
    resource_id: str = "obs-rr-1",
    patient_id: str = "pat-1",
    version_id: str | None = "3",
    last_updated: str | None = "2025-01-02T03:04:05.678+00:00",
) -> dict[str, Any]:
    """A vital-sign Observation (respiratory rate, LOINC 9279-1) about `Patient/<patient_id>`."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "9279-1"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2025-01-02T03:00:00+00:00",
        "valueQuantity": {
            "value": 22,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
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
