"""FHIR Observations and clinical events for the reasoner's unit tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cdsflow.contracts import ClinicalEvent, EventSource
from cdsflow.reasoner.model_adapters import load_configured_adapters
from cdsflow.runtime.story import ucum_quantity, vital_sign_observation

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PATIENT = "Patient/p-1"
EHR_BASE_URL = "http://ehr.example/fhir"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ADAPTERS_DIR = Path(__file__).resolve().parents[3] / "adapters"
# the shipped adapters: deterioration-risk and medication-safety
READERS = load_configured_adapters([ADAPTERS_DIR])
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def observation(
    observation_id: str,
    code: str,
    value: float | None = None,
    unit: str = "/min",
    *,
    effective: datetime = NOW,
    status: str = "final",
    subject: str = PATIENT,
    components: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    resource = vital_sign_observation(subject, effective, code, value=value, ucum=unit)
    resource["id"] = observation_id
    resource["status"] = status
    if components is not None:
        resource["component"] = components
    return resource


def quantity(value: float, unit: str) -> dict[str, Any]:
    return ucum_quantity(value, unit)


def component(code: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": quantity(value, unit),
    }


def blood_pressure_panel(
    observation_id: str, systolic: float, diastolic: float, *, effective: datetime = NOW
) -> dict[str, Any]:
    return observation(
        observation_id,
        "85354-9",
        effective=effective,
        components=[
            component("8480-6", systolic, "mm[Hg]"),
            component("8462-4", diastolic, "mm[Hg]"),
        ],
    )


def clinical_event(
    resource: dict[str, Any],
    *,
    event_id: str = "event-1",
    patient_reference: str = PATIENT,
    patient_key: str = "k" * 32,
) -> ClinicalEvent:
    event = ClinicalEvent(
        event_id=event_id,
        resource_type=resource["resourceType"],
        resource_id=resource.get("id", ""),
        resource_json=json.dumps(resource).encode(),
        patient_key=patient_key,
        patient_reference=patient_reference,
        source=EventSource(ehr_base_url=EHR_BASE_URL),
    )
    event.occurred_at.FromDatetime(NOW)
    return event


def metformin_order(
    request_id: str, status: str = "active", *, subject: str = PATIENT
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "6809"}]},
        "subject": {"reference": subject},
        "authoredOn": "2025-02-01",
    }
