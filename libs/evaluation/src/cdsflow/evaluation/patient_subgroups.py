"""The subgroups a model is measured in besides the whole set: age band (completed years at the
patient's "as of" time, from Patient.birthDate) and sex (Patient.gender)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from cdsflow.evaluation.labelled_dataset import LabelledPatient
from cdsflow.models.fhir_elements import age_in_years, parse_fhir_date

AGE_BANDS = (("age < 65", 0, 65), ("age 65-79", 65, 80), ("age >= 80", 80, 10_000))
AGE_UNKNOWN = "age unknown"
GENDERS = ("female", "male", "other", "unknown")


def age_band(patient: LabelledPatient) -> str:
    text = patient.patient.get("birthDate")
    birth = parse_fhir_date(text) if isinstance(text, str) else None
    if birth is None:
        return AGE_UNKNOWN
    age = age_in_years(birth, patient.as_of)
    return next((name for name, low, high in AGE_BANDS if low <= age < high), AGE_UNKNOWN)


def sex(patient: LabelledPatient) -> str:
    gender = patient.patient.get("gender")
    return gender if gender in GENDERS else "unknown"


def subgroup_rows(patients: Sequence[LabelledPatient]) -> dict[str, npt.NDArray[np.bool_]]:
    """Each non-empty subgroup's rows (a mask over `patients`): age bands, then sexes."""
    bands = np.array([age_band(p) for p in patients])
    sexes = np.array([sex(p) for p in patients])
    groups = {name: bands == name for name, _, _ in AGE_BANDS}
    groups[AGE_UNKNOWN] = bands == AGE_UNKNOWN
    groups.update({gender: sexes == gender for gender in GENDERS})
    return {name: rows for name, rows in groups.items() if rows.any()}
