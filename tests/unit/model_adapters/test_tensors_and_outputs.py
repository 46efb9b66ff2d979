"""Input tensors (values and presence mask) and the reading of the model's outputs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from cdsflow.models import (
    MissingRequiredInputs,
    ModelContractError,
    build_model_inputs,
    interpret_outputs,
)
from cdsflow.models.recommendation_basis import basis_entries, resource_references
from cdsflow.models.risk_bands import alert_threshold, band_of, is_at_or_above
from cdsflow.models.tensors import stacked_tensors

from .adapter_fixtures import (
    AS_OF,
    MEDICATION_SAFETY,
    adapter_with,
    deterioration_adapter,
    medication_adapter,
    observation,
    patient,
)


def _deterioration_inputs() -> Any:
    resources = [
        patient("1950-01-01"),
        observation("rr-1", "9279-1", 18, "/min", hours_before=12),
        observation("rr-2", "9279-1", 28, "/min", hours_before=1),
        observation("hr", "8867-4", 120, "/min", hours_before=2),
    ]
    return build_model_inputs(deterioration_adapter(), resources, AS_OF)


def test_tensors_hold_one_row_with_a_presence_mask() -> None:
    tensors = _deterioration_inputs().tensors
    assert tensors["features"].dtype == np.float32
    assert tensors["features"].shape == (1, 15)
    assert tensors["present"].dtype == np.bool_
    present = np.flatnonzero(tensors["present"][0]).tolist()
    # respiratory rate, heart rate, respiratory rate trend, age
    assert present == [0, 4, 7, 14]
    assert tensors["features"][0, [0, 4, 7, 14]].tolist() == [28.0, 120.0, 10.0, 76.0]
    # not observed: 0 and absent, never a normal value
    assert np.all(tensors["features"][0, ~tensors["present"][0]] == 0)


def test_a_missing_required_input_means_no_model_call() -> None:
    old = "{name: egfr, data: egfr, aggregation: latest}"
    adapter = adapter_with(MEDICATION_SAFETY, old, old.replace("}", ", required: true}"))
    with pytest.raises(MissingRequiredInputs) as raised:
        build_model_inputs(adapter, [], AS_OF)
    assert raised.value.columns == ["egfr"]


def _outputs(risk: float, contributions: list[float] | None = None) -> dict[str, Any]:
    terms = contributions if contributions is not None else [0.0] * 15
    return {
        "deterioration_risk": np.array([[risk]], dtype=np.float32),
        "log_odds": np.array([[-1.0]], dtype=np.float32),
        "contributions": np.array([terms], dtype=np.float32),
    }


def test_outputs_give_score_band_values_and_the_basis_by_contribution() -> None:
    inputs = _deterioration_inputs()
    terms = [0.0] * 15
    terms[0], terms[4], terms[7], terms[14] = 0.4, 1.2, -0.3, 0.2
    result = interpret_outputs(deterioration_adapter(), inputs, _outputs(0.35, terms))
    assert result.score == pytest.approx(0.35)
    assert result.band is not None
    assert (result.band.name, result.indicator) == ("high", "critical")
    assert result.values == {"log_odds": -1.0}
    assert [b.column.column.name for b in result.basis] == [
        "heart_rate",
        "respiratory_rate",
        "age",
        "respiratory_rate_trend",
    ]
    assert result.basis[0].contribution == pytest.approx(1.2)
    assert len(result.missing) == 11


@pytest.mark.parametrize(
    ("tensors", "words"),
    [
        (
            {"log_odds": np.zeros((1, 1)), "contributions": np.zeros((1, 15))},
            "no deterioration_risk",
        ),
        ({**_outputs(0.2), "contributions": np.zeros((1, 14))}, "shape"),
        ({**_outputs(0.2), "log_odds": np.array([[np.nan]])}, "not finite"),
        (_outputs(1.5), "outside [0, 1]"),
    ],
)
def test_outputs_that_break_the_declared_contract_are_refused(
    tensors: dict[str, Any], words: str
) -> None:
    with pytest.raises(ModelContractError, match=re.escape(words)):
        interpret_outputs(deterioration_adapter(), _deterioration_inputs(), tensors)


@pytest.mark.parametrize(
    ("score", "band"),
    [(0.0, "low"), (0.0999, "low"), (0.1, "moderate"), (0.2999, "moderate"), (0.3, "high")],
)
def test_bands_start_at_their_from_inclusive(score: float, band: str) -> None:
    assert band_of(deterioration_adapter().risk_bands, score).name == band


def test_alerting_from_a_band() -> None:
    bands = medication_adapter().risk_bands
    assert alert_threshold(bands, "review") == 0.5
    assert is_at_or_above(bands, band_of(bands, 1.0), "review")
    assert not is_at_or_above(bands, band_of(bands, 0.0), "review")


def test_a_batch_of_patients_is_stacked_and_read_back_by_row() -> None:
    adapter = deterioration_adapter()
    first = _deterioration_inputs()
    second = build_model_inputs(adapter, [observation("t", "8310-5", 39.0, "Cel")], AS_OF)
    batch = stacked_tensors([first, second])
    assert batch["features"].shape == (2, 15)
    assert batch["present"][1].tolist() == second.tensors["present"][0].tolist()
    outputs = {
        "deterioration_risk": np.array([[0.02], [0.5]], dtype=np.float32),
        "log_odds": np.array([[-3.0], [0.0]], dtype=np.float32),
        "contributions": np.zeros((2, 15), dtype=np.float32),
    }
    assert interpret_outputs(adapter, first, outputs, row=0).score == pytest.approx(0.02)
    result = interpret_outputs(adapter, second, outputs, row=1)
    assert result.score == pytest.approx(0.5)
    assert [b.column.column.name for b in result.basis] == ["body_temperature"]
    with pytest.raises(ModelContractError, match="shape"):
        interpret_outputs(adapter, second, outputs, row=2)


def test_the_basis_as_flat_entries_for_a_recommendation() -> None:
    inputs = _deterioration_inputs()
    terms = [0.0] * 15
    terms[4], terms[7] = 1.0, 0.5
    result = interpret_outputs(deterioration_adapter(), inputs, _outputs(0.2, terms))
    entries = basis_entries(result)
    assert [(e.name, e.code, e.value, e.resource_reference) for e in entries[:2]] == [
        ("heart_rate", "http://loinc.org|8867-4", 120.0, "Observation/hr"),
        ("respiratory_rate_trend", "http://loinc.org|9279-1", 10.0, "Observation/rr-2"),
    ]
    age = next(e for e in entries if e.name == "age")
    assert (age.code, age.unit, age.observed_at) == ("birthDate", "a", None)
    assert resource_references(result) == [
        "Observation/hr",
        "Observation/rr-1",
        "Observation/rr-2",
        "Patient/p-1",
    ]
