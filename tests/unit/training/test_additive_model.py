"""The additive model: exact per-input contributions, learned missingness, and an ONNX
export that computes the same as the fitted model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest

from cdsflow.training.additive_model import (
    MISSING_SLOT,
    AdditiveRiskModel,
    fit_additive_model,
)
from cdsflow.training.model_inputs import N_INPUTS, VITAL_SIGN_NAMES
from cdsflow.training.onnx_export import OUTPUTS, to_onnx
from cdsflow.training.synthetic_cohort import SyntheticCohort, generate_cohort

SPO2 = VITAL_SIGN_NAMES.index("oxygen_saturation")


@pytest.fixture(scope="module")
def training_cohort() -> SyntheticCohort:
    return generate_cohort(6000, seed=21)


@pytest.fixture(scope="module")
def model(training_cohort: SyntheticCohort) -> AdditiveRiskModel:
    features, present = training_cohort.model_inputs()
    return fit_additive_model(features, present, training_cohort.deteriorated)


@pytest.fixture(scope="module")
def session(model: AdditiveRiskModel) -> onnxruntime.InferenceSession:
    exported = to_onnx(model, {"seed": "21"}).SerializeToString()
    return onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])


def test_contributions_add_up_to_the_log_odds(
    model: AdditiveRiskModel, training_cohort: SyntheticCohort
) -> None:
    features, present = training_cohort.model_inputs()
    contributions = model.contributions(features, present)
    assert contributions.shape == (len(training_cohort), N_INPUTS)
    np.testing.assert_allclose(
        model.intercept + contributions.astype(np.float64).sum(axis=1),
        model.log_odds(features, present),
    )
    # centred: on the training cohort each input's mean contribution is zero
    np.testing.assert_allclose(contributions.mean(axis=0), 0.0, atol=1e-5)


def test_bin_edges_ascend_and_every_input_has_some(model: AdditiveRiskModel) -> None:
    for column in range(N_INPUTS):
        finite = model.edges[column][np.isfinite(model.edges[column])]
        assert finite.size >= 2
        assert (np.diff(finite) > 0).all()


def test_a_missing_input_takes_its_own_slot_and_its_value_is_ignored(
    model: AdditiveRiskModel, training_cohort: SyntheticCohort
) -> None:
    features, present = training_cohort.model_inputs()
    rows = features[:50].copy(), present[:50].copy()
    rows[1][:, SPO2] = False
    assert (model.slots(*rows)[:, SPO2] == MISSING_SLOT).all()
    rows[0][:, SPO2] = 60.0
    low = model.contributions(*rows)[:, SPO2]
    rows[0][:, SPO2] = 99.0
    np.testing.assert_array_equal(model.contributions(*rows)[:, SPO2], low)
    # NaN counts as not observed too
    nan_rows = features[:5].copy()
    nan_rows[:, SPO2] = np.nan
    assert (model.slots(nan_rows, present[:5])[:, SPO2] == MISSING_SLOT).all()


def test_not_observed_is_not_scored_as_normal(model: AdditiveRiskModel) -> None:
    normal = np.array([[16, 97, 21, 125, 75, 37.0, 15, 0, 0, 0, 0, 0, 0, 0, 60]], np.float32)
    observed = np.ones_like(normal, dtype=bool)
    missing = observed.copy()
    missing[0, :7] = False
    normal_terms = model.contributions(normal, observed)[0, :7]
    missing_terms = model.contributions(normal, missing)[0, :7]
    assert (normal_terms != missing_terms).all()


def test_the_onnx_export_computes_what_the_model_computes(
    model: AdditiveRiskModel, session: onnxruntime.InferenceSession
) -> None:
    held_out = generate_cohort(2000, seed=22)
    features, present = held_out.model_inputs()
    risk, log_odds, contributions = session.run(
        list(OUTPUTS), {"features": features, "present": present}
    )
    np.testing.assert_array_equal(contributions, model.contributions(features, present))
    np.testing.assert_allclose(log_odds[:, 0], model.log_odds(features, present), atol=1e-5)
    np.testing.assert_allclose(risk[:, 0], model.risk(features, present), atol=1e-6)


def test_the_onnx_file_suits_the_onnxruntime_of_triton_24_10(model: AdditiveRiskModel) -> None:
    # onnxruntime 1.19 (in nvcr.io/nvidia/tritonserver:24.10-py3) reads IR <= 10, opset <= 21
    exported = to_onnx(model, {})
    assert exported.ir_version <= 10
    assert [(o.domain, o.version) for o in exported.opset_import] == [("", 17)]
    onnx.checker.check_model(exported, full_check=True)
    properties = {p.key: p.value for p in exported.metadata_props}
    assert float(properties["intercept"]) == pytest.approx(model.intercept)
