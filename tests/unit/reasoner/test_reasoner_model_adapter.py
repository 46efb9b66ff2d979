"""The model adapter: context -> input tensors, output tensors -> scores, in the model's order."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import numpy.typing as npt
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cdsflow.reasoner.domain.model_adapter import (
    OUTPUT_NAMES,
    PRESENT_INPUT,
    VITAL_SIGNS_INPUT,
    ModelContractError,
    model_inputs,
    model_outputs,
)
from cdsflow.reasoner.domain.patient_context import assemble_patient_context, trigger_readings
from cdsflow.reasoner.domain.vital_signs import VITAL_SIGNS

from ..models.model_files import MODEL_DIR, load_early_warning
from .reasoner_fhir import EHR_BASE_URL, NOW, PATIENT, blood_pressure_panel, observation


def test_the_adapter_uses_the_models_column_order_and_tensor_names() -> None:
    assert tuple(v.name for v in VITAL_SIGNS) == load_early_warning().VITAL_SIGNS
    config = model_config_pb2.ModelConfig()
    text_format.Parse((MODEL_DIR / "config.pbtxt").read_text(), config)
    assert [i.name for i in config.input] == [VITAL_SIGNS_INPUT, PRESENT_INPUT]
    assert tuple(o.name for o in config.output) == OUTPUT_NAMES


def test_readings_fill_their_columns_and_missing_ones_are_masked() -> None:
    trigger = observation("t-1", "8310-5", 101.3, "[degF]")
    history = [
        blood_pressure_panel("bp-1", 95, 60, effective=NOW - timedelta(minutes=30)),
        observation("rr-1", "9279-1", 23, effective=NOW - timedelta(minutes=30)),
    ]
    context = assemble_patient_context(
        PATIENT,
        trigger,
        trigger_readings(trigger, None),
        history,
        timedelta(hours=24),
        ehr_base_url=EHR_BASE_URL,
    )
    inputs = model_inputs(context)
    assert inputs.vital_signs.dtype == np.float32
    assert inputs.present.dtype == np.bool_
    assert inputs.vital_signs.shape == inputs.present.shape == (1, 7)
    np.testing.assert_allclose(inputs.vital_signs[0], [23, 0, 0, 95, 0, 38.5, 0], rtol=1e-6)
    assert inputs.present[0].tolist() == [True, False, False, True, False, True, False]
    assert set(inputs.as_tensors()) == {VITAL_SIGNS_INPUT, PRESENT_INPUT}


def _tensors(score: float = 0.9, points: float = 8.0) -> dict[str, npt.NDArray[np.float32] | None]:
    return {
        "deterioration_score": np.array([[score]], dtype=np.float32),
        "early_warning_points": np.array([[points]], dtype=np.float32),
        "vital_sign_points": np.array([[3, 2, 0, 3, 0, 0, 0]], dtype=np.float32),
    }


def test_outputs_are_read_per_vital_sign() -> None:
    outputs = model_outputs(_tensors())
    assert outputs.deterioration_score == pytest.approx(0.9)
    assert outputs.early_warning_points == 8.0
    assert outputs.vital_sign_points == {
        "respiratory_rate": 3.0,
        "oxygen_saturation": 2.0,
        "inhaled_oxygen_concentration": 0.0,
        "systolic_blood_pressure": 3.0,
        "heart_rate": 0.0,
        "body_temperature": 0.0,
        "glasgow_coma_score": 0.0,
    }


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"deterioration_score": None}, "no deterioration_score"),
        ({"deterioration_score": np.array([[1.5]], dtype=np.float32)}, r"outside \[0, 1\]"),
        ({"early_warning_points": np.array([[np.nan]], dtype=np.float32)}, "not finite"),
        ({"vital_sign_points": np.zeros((1, 6), dtype=np.float32)}, "shape"),
    ],
)
def test_outputs_outside_the_contract_are_refused(
    change: dict[str, npt.NDArray[np.float32] | None], problem: str
) -> None:
    with pytest.raises(ModelContractError, match=problem):
        model_outputs({**_tensors(), **change})
