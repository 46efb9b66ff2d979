"""The held-out set as FHIR, for `cdsflow evaluate`: one collection Bundle per patient and
the outcomes beside it, written deterministically from `heldout.jsonl`.

- `bundles.ndjson.gz`: one Bundle (`type: collection`) per line, in the held-out order; each
  holds the Patient (`gender`; `birthDate` when the age is known, chosen so that the age in
  completed years at the patient's "as of" time is the record's age) and one vital-signs
  Observation per charted value (LOINC code, UCUM quantity, `effectiveDateTime` = as of minus
  the record's hours before).
- `outcomes.csv`: `patient_id,as_of,label,observation_days` — label 1 when the patient
  deteriorated within 24 h; each prediction covers one day.

Each patient's "as of" time is its own (2026-03-02T00:00Z plus 137 minutes per row), so that
the set is not one instant. gzip is written without a name or time, so the same held-out set
gives the same bytes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cdsflow.training.model_inputs import VITAL_SIGNS, VitalSign

BUNDLES_FILE = "bundles.ndjson.gz"
OUTCOMES_FILE = "outcomes.csv"
OUTCOME_COLUMNS = ("patient_id", "as_of", "label", "observation_days")
FIRST_AS_OF = datetime(2026, 3, 2, tzinfo=UTC)
AS_OF_STEP = timedelta(minutes=137)
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
LOINC_DISPLAY = {
    "9279-1": "Respiratory rate",
    "59408-5": "Oxygen saturation in Arterial blood by Pulse oximetry",
    "3150-0": "Inhaled oxygen concentration",
    "8480-6": "Systolic blood pressure",
    "8867-4": "Heart rate",
    "8310-5": "Body temperature",
    "9269-2": "Glasgow coma score total",
}
_VITAL_SIGN = {vital_sign.name: vital_sign for vital_sign in VITAL_SIGNS}


def as_of_of(row: int) -> datetime:
    return FIRST_AS_OF + row * AS_OF_STEP


def fhir_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def birth_date(age: int, as_of: datetime, row: int) -> date:
    """A birth date earlier in the calendar year than `as_of` (a day that varies by row), in
    the year that makes the patient `age` completed years old on `as_of`'s day."""
    new_year = date(as_of.year, 1, 1)
    days_into_year = (as_of.date() - new_year).days
    if days_into_year < 1:
        raise ValueError("as of must not fall on 1 January")
    return date(as_of.year - age, 1, 1) + timedelta(days=(row * 37) % days_into_year)


def _observation(
    patient_id: str, vital_sign: VitalSign, index: int, when: datetime, value: float
) -> dict[str, Any]:
    code = vital_sign.loinc
    return {
        "resourceType": "Observation",
        "id": f"{patient_id}-{vital_sign.name}-{index}",
        "status": "final",
        "category": [VITAL_SIGNS_CATEGORY],
        "code": {"coding": [{"system": LOINC, "code": code, "display": LOINC_DISPLAY[code]}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": fhir_time(when),
        "valueQuantity": {
            "value": value,
            "unit": vital_sign.unit,
            "system": UCUM,
            "code": vital_sign.unit,
        },
    }


def patient_bundle(record: dict[str, Any], as_of: datetime, row: int) -> dict[str, Any]:
    """One held-out record as a collection Bundle: its Patient and its Observations."""
    patient_id = record["patient"]
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    patient["gender"] = record["sex"]
    if record["age"] is not None:
        patient["birthDate"] = birth_date(int(record["age"]), as_of, row).isoformat()
    resources = [patient]
    for name, pairs in record["observations"].items():
        vital_sign = _VITAL_SIGN[name]
        for index, (hours_before, value) in enumerate(pairs):
            when = as_of - timedelta(seconds=round(hours_before * 3600))
            resources.append(_observation(patient_id, vital_sign, index, when, value))
    return {
        "resourceType": "Bundle",
        "id": patient_id,
        "type": "collection",
        "entry": [{"resource": resource} for resource in resources],
    }


def _records(evaluation_file: Path) -> Iterator[dict[str, Any]]:
    with evaluation_file.open(encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def write_fhir_evaluation_set(evaluation_file: Path, dataset_dir: Path) -> None:
    """`bundles.ndjson.gz` and `outcomes.csv` in `dataset_dir` from the JSON-lines set."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    bundles = io.BytesIO()
    outcomes = io.StringIO()
    table = csv.writer(outcomes, lineterminator="\n")
    table.writerow(OUTCOME_COLUMNS)
    with gzip.GzipFile(filename="", mode="wb", fileobj=bundles, mtime=0, compresslevel=9) as out:
        for row, record in enumerate(_records(evaluation_file)):
            as_of = as_of_of(row)
            bundle = patient_bundle(record, as_of, row)
            out.write((json.dumps(bundle, separators=(",", ":")) + "\n").encode("utf-8"))
            label = int(bool(record["deteriorated_within_24h"]))
            table.writerow((record["patient"], fhir_time(as_of), label, 1))
    (dataset_dir / BUNDLES_FILE).write_bytes(bundles.getvalue())
    (dataset_dir / OUTCOMES_FILE).write_text(outcomes.getvalue(), encoding="utf-8")
