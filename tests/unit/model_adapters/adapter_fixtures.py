"""FHIR resources and adapter files for the model adapter engine's unit tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cdsflow.models import ModelAdapter, load_adapter, parse_adapter

REPO_ROOT = Path(__file__).resolve().parents[3]
ADAPTERS = REPO_ROOT / "adapters"
DETERIORATION = ADAPTERS / "deterioration-risk.yaml"
MEDICATION_SAFETY = ADAPTERS / "medication-safety.yaml"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
AS_OF = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def deterioration_adapter() -> ModelAdapter:
    return load_adapter(DETERIORATION)


def medication_adapter() -> ModelAdapter:
    return load_adapter(MEDICATION_SAFETY)


def adapter_with(path: Path, old: str, new: str) -> ModelAdapter:
    """The adapter in `path` with `old` (which must occur) replaced once by `new`."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    return parse_adapter(text.replace(old, new, 1), path)


def observation(
    observation_id: str,
    code: str,
    value: float,
    unit: str,
    *,
    hours_before: float = 1.0,
    status: str = "final",
) -> dict[str, Any]:
    effective = AS_OF - timedelta(hours=hours_before)
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p-1"},
        "effectiveDateTime": effective.isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def patient(birth_date: str | None = "1950-06-15", patient_id: str = "p-1") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if birth_date is not None:
        resource["birthDate"] = birth_date
    return resource


def medication_request(
    request_id: str, rxnorm: str = "861007", *, status: str = "active"
) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm}]},
        "subject": {"reference": "Patient/p-1"},
        "authoredOn": (AS_OF - timedelta(days=30)).isoformat(),
    }


# a test adapter's system action (no shipped adapter declares one): at high deterioration
# risk, the EHR may flag the chart by itself
FLAG_SYSTEM_ACTION = """system_actions:
  - bands: [high]
    type: create
    description: "Flag the chart: deterioration risk {score:.0%} within 24 h"
    resource:
      resourceType: Flag
      status: active
      category:
        - text: Clinical
      code:
        text: "High deterioration risk ({model}, AI-generated)"
      subject:
        reference: "{patient}"

"""


def flagging_deterioration_text(system_actions: str = FLAG_SYSTEM_ACTION) -> str:
    """The deterioration adapter's file with `system_actions` added before its hooks."""
    text = DETERIORATION.read_text(encoding="utf-8")
    assert "\nhooks:" in text
    return text.replace("\nhooks:", "\n" + system_actions + "hooks:", 1)


def flagging_deterioration_adapter() -> ModelAdapter:
    return parse_adapter(flagging_deterioration_text(), DETERIORATION)
