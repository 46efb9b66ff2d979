"""The shipped FHIR evaluation set is the held-out set: written again from `heldout.jsonl` it
is byte-identical, and the deterioration adapter builds from each patient's Bundle the
tensors that the training reference (`model_inputs_of`) builds from the JSON-lines record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cdsflow.evaluation.labelled_dataset import read_labelled_dataset
from cdsflow.models import build_model_inputs, load_adapter
from cdsflow.models.fhir_elements import age_in_years, parse_fhir_date
from cdsflow.training.evaluation_set import model_inputs_of
from cdsflow.training.fhir_evaluation_set import write_fhir_evaluation_set

REPO_ROOT = Path(__file__).resolve().parents[3]
DATASET = REPO_ROOT / "datasets" / "deterioration_risk"
ADAPTER = REPO_ROOT / "adapters" / "deterioration-risk.yaml"


def test_the_shipped_files_are_what_the_export_writes(tmp_path: Path) -> None:
    write_fhir_evaluation_set(DATASET / "heldout.jsonl", tmp_path)
    for name in ("bundles.ndjson.gz", "outcomes.csv"):
        assert (tmp_path / name).read_bytes() == (DATASET / name).read_bytes(), name


def test_every_bundle_gives_the_reference_tensors_labels_and_ages() -> None:
    adapter = load_adapter(ADAPTER)
    with (DATASET / "heldout.jsonl").open(encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines]
    patients = read_labelled_dataset(DATASET)
    assert [p.patient_id for p in patients] == [r["patient"] for r in records]
    for patient, record in zip(patients, records, strict=True):
        assert patient.label == record["deteriorated_within_24h"]
        assert patient.observation_days == 1.0
        assert patient.patient["gender"] == record["sex"]
        if record["age"] is None:
            assert "birthDate" not in patient.patient
        else:
            birth = parse_fhir_date(patient.patient["birthDate"])
            assert birth is not None
            assert age_in_years(birth, patient.as_of) == record["age"]
        inputs = build_model_inputs(adapter, patient.resources, patient.as_of)
        assert inputs.extracted.refused == (), patient.patient_id
        features, present = model_inputs_of(record)
        np.testing.assert_array_equal(
            inputs.tensors["present"], np.array([present], dtype=bool), patient.patient_id
        )
        np.testing.assert_array_equal(
            inputs.tensors["features"], np.array([features], dtype=np.float32), patient.patient_id
        )
