"""The demo's clinical story: one patient whose vital signs deteriorate, one who stays well.

Written to the EHR as a client would: a Patient each, then rounds of vital-sign Observations
(FHIR vital-signs profile codes: LOINC, UCUM units), one round every few hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

VITAL_SIGNS_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        }
    ]
}
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class VitalSignsRound:
    """One round of observations at the bedside."""

    respiratory_rate: float  # /min
    oxygen_saturation: float  # %
    systolic_bp: float  # mm[Hg]
    diastolic_bp: float  # mm[Hg]
    heart_rate: float  # /min
    body_temperature: float  # Cel


@dataclass(frozen=True)
class StoryPatient:
    label: str
    given: str
    family: str
    birth_date: str
    gender: str
    rounds: tuple[VitalSignsRound, ...]


DETERIORATING = StoryPatient(
    label="deteriorating",
    given="Ada",
    family="Demo-Deteriorating",
    birth_date="1948-03-02",
    gender="female",
    rounds=(
        VitalSignsRound(16, 97, 124, 78, 80, 37.1),
        VitalSignsRound(22, 94, 106, 66, 108, 38.4),
        VitalSignsRound(28, 90, 90, 55, 131, 39.2),
    ),
)
STABLE = StoryPatient(
    label="stable",
    given="Ben",
    family="Demo-Stable",
    birth_date="1975-11-20",
    gender="male",
    rounds=(
        VitalSignsRound(14, 98, 122, 76, 72, 36.8),
        VitalSignsRound(15, 98, 119, 75, 70, 36.9),
        VitalSignsRound(14, 97, 121, 77, 74, 36.8),
    ),
)
STORY = (DETERIORATING, STABLE)


def patient_resource(patient: StoryPatient) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "active": True,
        "name": [{"family": patient.family, "given": [patient.given]}],
        "gender": patient.gender,
        "birthDate": patient.birth_date,
    }


def ucum_quantity(value: float, ucum: str, unit: str | None = None) -> dict[str, Any]:
    """A Quantity coded in UCUM; `unit` is the human-readable unit (defaults to the code)."""
    return {"value": value, "unit": unit or ucum, "system": UCUM, "code": ucum}


def vital_sign_observation(
    patient_reference: str,
    effective: datetime,
    code: str,
    display: str | None = None,
    value: float | None = None,
    ucum: str = "/min",
    unit: str | None = None,
) -> dict[str, Any]:
    """A final vital-signs Observation coded in LOINC, with a `valueQuantity` when `value` is
    given (a panel gets `component`s instead)."""
    coding: dict[str, str] = {"system": LOINC, "code": code}
    concept: dict[str, Any] = {"coding": [coding]}
    if display:
        coding["display"] = display
        concept["text"] = display
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS_CATEGORY],
        "code": concept,
        "subject": {"reference": patient_reference},
        "effectiveDateTime": effective.isoformat(timespec="seconds"),
    }
    if value is not None:
        observation["valueQuantity"] = ucum_quantity(value, ucum, unit)
    return observation


def round_observations(
    patient_reference: str, vitals: VitalSignsRound, effective: datetime
) -> list[dict[str, Any]]:
    """The Observations of one round: five single values and a blood-pressure panel."""
    single = [
        ("9279-1", "Respiratory rate", vitals.respiratory_rate, "/min", "/min"),
        ("2708-6", "Oxygen saturation in Arterial blood", vitals.oxygen_saturation, "%", "%"),
        ("8867-4", "Heart rate", vitals.heart_rate, "beats/minute", "/min"),
        ("8310-5", "Body temperature", vitals.body_temperature, "C", "Cel"),
    ]
    observations = [
        vital_sign_observation(patient_reference, effective, code, display, value, ucum, unit)
        for code, display, value, unit, ucum in single
    ]
    panel = vital_sign_observation(patient_reference, effective, "85354-9", "Blood pressure panel")
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic"}]},
            "valueQuantity": ucum_quantity(vitals.systolic_bp, "mm[Hg]", "mmHg"),
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic"}]},
            "valueQuantity": ucum_quantity(vitals.diastolic_bp, "mm[Hg]", "mmHg"),
        },
    ]
    observations.append(panel)
    return observations


def round_times(
    now: datetime, rounds: int, every: timedelta = timedelta(hours=4)
) -> list[datetime]:
    """Times of `rounds` rounds, `every` apart, the last one at `now`."""
    return [now - every * (rounds - 1 - index) for index in range(rounds)]
