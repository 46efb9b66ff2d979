"""The deterioration adapter builds the same tensors as the model's training reference
(`cdsflow.training.evaluation_set.model_inputs_of`), from the held-out patients' charted
values written as FHIR Observations and a Patient."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from cdsflow.models import build_model_inputs
from cdsflow.training.evaluation_set import model_inputs_of
from cdsflow.training.model_inputs import INPUT_NAMES, INPUT_UNITS, VITAL_SIGNS

from .adapter_fixtures import AS_OF, LOINC, REPO_ROOT, deterioration_adapter

HELD_OUT = REPO_ROOT / "datasets" / "deterioration_risk" / "heldout.jsonl"
_VITAL_SIGN = {vital_sign.name: vital_sign for vital_sign in VITAL_SIGNS}


def _held_out_records() -> list[dict[str, Any]]:
    with HELD_OUT.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def _birth_date(age: int, as_of: datetime) -> str:
    """A birth date that makes the patient `age` completed years old on `as_of`."""
    day = as_of.date()
    return (
        date(day.year - age, 1, 1).isoformat()
        if day.month > 1
        else date(day.year - age - 1, 1, 1).isoformat()
    )


def fhir_context(record: dict[str, Any], as_of: datetime) -> list[dict[str, Any]]:
    """The record's charted values as Observations (in the reference's units) and a Patient."""
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": record["patient"]}]
    if record["age"] is not None:
        resources[0]["birthDate"] = _birth_date(record["age"], as_of)
    for name, pairs in record["observations"].items():
        vital_sign = _VITAL_SIGN[name]
        for index, (hours_before, value) in enumerate(pairs):
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"{record['patient']}-{name}-{index}",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": vital_sign.loinc}]},
                    "effectiveDateTime": (as_of - timedelta(hours=hours_before)).isoformat(),
                    "valueQuantity": {"value": value, "code": vital_sign.unit},
                }
            )
    return resources


def test_the_adapter_declares_the_reference_columns_and_units() -> None:
    adapter = deterioration_adapter()
    (tensor,) = adapter.inputs.tensors
    assert [column.name for column in tensor.columns] == list(INPUT_NAMES)
    units = [
        "a" if column.data == "age" else adapter.data[column.data].unit  # type: ignore[union-attr]
        for column in tensor.columns
    ]
    assert units == list(INPUT_UNITS)
    assert (tensor.name, tensor.presence_tensor, tensor.datatype) == ("features", "present", "FP32")


def test_every_held_out_patient_gets_the_reference_tensors() -> None:
    adapter = deterioration_adapter()
    records = _held_out_records()
    assert len(records) >= 1000
    for record in records:
        expected_features, expected_present = model_inputs_of(record)
        inputs = build_model_inputs(adapter, fhir_context(record, AS_OF), AS_OF)
        assert inputs.extracted.refused == (), record["patient"]
        np.testing.assert_array_equal(
            inputs.tensors["present"], np.array([expected_present], dtype=bool), record["patient"]
        )
        np.testing.assert_array_equal(
            inputs.tensors["features"],
            np.array([expected_features], dtype=np.float32),
            record["patient"],
        )


def test_values_outside_the_window_agree_with_the_reference_too() -> None:
    record = {
        "patient": "window",
        "age": 80,
        "sex": "female",
        "observations": {
            # 30 h before is outside the 24 h window: no trend, latest from the 2 h reading
            "heart_rate": [[30.0, 60.0], [2.0, 120.0]],
            # exactly 24 h before is inside it
            "respiratory_rate": [[24.0, 14.0], [0.5, 26.0]],
        },
        "deteriorated_within_24h": False,
    }
    expected_features, expected_present = model_inputs_of(record)
    inputs = build_model_inputs(deterioration_adapter(), fhir_context(record, AS_OF), AS_OF)
    assert inputs.tensors["present"][0].tolist() == expected_present
    assert inputs.tensors["features"][0].tolist() == pytest.approx(expected_features)
    heart_rate_trend = INPUT_NAMES.index("heart_rate_trend")
    assert not inputs.tensors["present"][0, heart_rate_trend]


def test_a_temperature_in_fahrenheit_is_the_same_input_in_celsius() -> None:
    record = {
        "patient": "fahrenheit",
        "age": None,
        "sex": "male",
        "observations": {"body_temperature": [[6.0, 37.0], [1.0, 39.0]]},
        "deteriorated_within_24h": False,
    }
    resources = fhir_context(record, AS_OF)
    for resource in resources[1:]:
        celsius = resource["valueQuantity"]["value"]
        resource["valueQuantity"] = {"value": celsius * 9 / 5 + 32, "code": "[degF]"}
    expected_features, expected_present = model_inputs_of(record)
    inputs = build_model_inputs(deterioration_adapter(), resources, AS_OF)
    assert inputs.tensors["present"][0].tolist() == expected_present
    assert inputs.tensors["features"][0].tolist() == pytest.approx(expected_features, abs=1e-4)
