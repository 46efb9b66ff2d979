"""A labelled evaluation dataset: a folder with one FHIR collection Bundle per patient and the
outcomes beside it (format: datasets/README.md).

    bundles.ndjson.gz (or bundles.ndjson)   one Bundle per line: the Patient and its data
    outcomes.csv                            patient_id,as_of,label,observation_days

Anything wrong is a `DatasetError` naming the file and the line (and the Bundle entry), so
that `cdsflow evaluate` can say what to fix; nothing of a patient's data is in the message
beyond the identifiers given in the files.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

BUNDLE_FILES = ("bundles.ndjson.gz", "bundles.ndjson")
OUTCOMES_FILE = "outcomes.csv"
OUTCOME_COLUMNS = ("patient_id", "as_of", "label", "observation_days")


class DatasetError(ValueError):
    """The dataset cannot be read: `str()` names the file, the line and what is wrong."""


@dataclass(frozen=True)
class Outcome:
    as_of: datetime
    label: bool
    observation_days: float


@dataclass(frozen=True)
class LabelledPatient:
    patient_id: str
    as_of: datetime
    label: bool
    observation_days: float
    patient: Mapping[str, Any]  # the Patient resource
    resources: tuple[Mapping[str, Any], ...]  # every resource of the Bundle, Patient included


def bundles_file(dataset_dir: Path) -> Path:
    for name in BUNDLE_FILES:
        if (dataset_dir / name).is_file():
            return dataset_dir / name
    raise DatasetError(f"{dataset_dir}: no {' or '.join(BUNDLE_FILES)} in the dataset folder")


def read_outcomes(path: Path) -> dict[str, Outcome]:
    """The outcomes by patient id."""
    if not path.is_file():
        raise DatasetError(f"{path}: the dataset has no outcomes file")
    outcomes: dict[str, Outcome] = {}
    with path.open(encoding="utf-8", newline="") as text:
        table = csv.reader(text)
        header = next(table, None)
        if header is None or tuple(h.strip() for h in header) != OUTCOME_COLUMNS:
            raise DatasetError(f"{path}:1: the header must be {','.join(OUTCOME_COLUMNS)}")
        for row in table:
            where = f"{path}:{table.line_num}"
            if not row:
                continue
            patient_id, outcome = _outcome(row, where)
            if patient_id in outcomes:
                raise DatasetError(f"{where}: patient {patient_id!r} is listed twice")
            outcomes[patient_id] = outcome
    if not outcomes:
        raise DatasetError(f"{path}: no outcomes")
    return outcomes


def _outcome(row: list[str], where: str) -> tuple[str, Outcome]:
    if len(row) != len(OUTCOME_COLUMNS):
        raise DatasetError(f"{where}: {len(row)} columns, expected {len(OUTCOME_COLUMNS)}")
    patient_id, as_of_text, label, days_text = (cell.strip() for cell in row)
    if not patient_id:
        raise DatasetError(f"{where}: patient_id is empty")
    as_of = _zoned_datetime(as_of_text)
    if as_of is None:
        raise DatasetError(f"{where}: as_of {as_of_text!r} is not a FHIR dateTime with a zone")
    if label not in ("0", "1"):
        raise DatasetError(f"{where}: label {label!r} must be 0 or 1")
    try:
        days = float(days_text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days > 0):
        raise DatasetError(f"{where}: observation_days {days_text!r} must be a number above 0")
    return patient_id, Outcome(as_of=as_of, label=label == "1", observation_days=days)


def _zoned_datetime(text: str) -> datetime | None:
    """A FHIR dateTime with a time and a zone (`2026-03-02T08:00:00Z`), else None."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if "T" in text and moment.tzinfo is not None else None


def _bundle_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with (
            gzip.open(path, "rt", encoding="utf-8")
            if path.suffix == ".gz"
            else path.open(encoding="utf-8")
        ) as lines:
            yield from enumerate(lines, start=1)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot be read ({exc})") from exc


def _bundle_patient(
    bundle: object, where: str
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """The Patient and all resources of one Bundle line."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise DatasetError(f"{where}: not a FHIR Bundle")
    if bundle.get("type") != "collection":
        raise DatasetError(f"{where}: Bundle.type must be collection")
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{where}: the Bundle has no entry")
    resources = []
    patients = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise DatasetError(f"{where}: entry[{index}] has no resource with a resourceType")
        if resource["resourceType"] == "Patient":
            patients.append((index, resource))
        resources.append(resource)
    if len(patients) != 1:
        raise DatasetError(f"{where}: the Bundle must hold one Patient, it holds {len(patients)}")
    index, patient = patients[0]
    if not isinstance(patient.get("id"), str) or not patient["id"]:
        raise DatasetError(f"{where}: entry[{index}]: the Patient has no id")
    return patient, tuple(resources)


def read_labelled_dataset(dataset_dir: Path, limit: int | None = None) -> list[LabelledPatient]:
    """Every patient of the dataset (the first `limit` Bundles), in the Bundles' order; each
    Bundle's patient must have an outcome, and each outcome a Bundle (unless `limit`)."""
    if not dataset_dir.is_dir():
        raise DatasetError(f"{dataset_dir}: no such dataset folder")
    outcomes = read_outcomes(dataset_dir / OUTCOMES_FILE)
    path = bundles_file(dataset_dir)
    patients: list[LabelledPatient] = []
    seen: set[str] = set()
    for line_number, line in _bundle_lines(path):
        if limit is not None and len(patients) >= limit:
            break
        where = f"{path}:{line_number}"
        if not line.strip():
            continue
        try:
            bundle = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from exc
        patient, resources = _bundle_patient(bundle, where)
        patient_id = patient["id"]
        if patient_id in seen:
            raise DatasetError(f"{where}: patient {patient_id!r} has a second Bundle")
        outcome = outcomes.get(patient_id)
        if outcome is None:
            raise DatasetError(f"{where}: patient {patient_id!r} has no row in {OUTCOMES_FILE}")
        seen.add(patient_id)
        patients.append(
            LabelledPatient(
                patient_id=patient_id,
                as_of=outcome.as_of,
                label=outcome.label,
                observation_days=outcome.observation_days,
                patient=patient,
                resources=resources,
            )
        )
    if not patients:
        raise DatasetError(f"{path}: no Bundles")
    if limit is None and len(seen) != len(outcomes):
        missing = sorted(set(outcomes) - seen)
        raise DatasetError(
            f"{dataset_dir / OUTCOMES_FILE}: {len(missing)} patient(s) have no Bundle in "
            f"{path.name}, e.g. {missing[0]!r}"
        )
    return patients
