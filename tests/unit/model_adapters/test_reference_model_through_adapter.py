"""The reference model, run with onnxruntime on tensors the adapter built from FHIR
resources: its outputs are read as the adapter declares them, and a patient with NEWS2 >= 7
is ranked and carded above one with NEWS2 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime
import pytest

from cdsflow.models import (
    CardRendering,
    ModelResult,
    build_model_inputs,
    interpret_outputs,
    render_cards,
)
from cdsflow.models.tensor_specs import declared_outputs

from .adapter_fixtures import AS_OF, REPO_ROOT, deterioration_adapter, observation, patient

MODEL = REPO_ROOT / "models" / "deterioration_risk" / "1" / "model.onnx"
ADAPTER = deterioration_adapter()


def _vital_signs(
    rr: float, spo2: float, fio2: float, sbp: float, hr: float, t: float, gcs: float
) -> list[dict[str, Any]]:
    charted = [
        ("9279-1", rr, "/min"),
        ("59408-5", spo2, "%"),
        ("3150-0", fio2, "%"),
        ("8480-6", sbp, "mm[Hg]"),
        ("8867-4", hr, "/min"),
        ("8310-5", t, "Cel"),
        ("9269-2", gcs, "{score}"),
    ]
    return [observation(f"o-{i}", code, v, unit) for i, (code, v, unit) in enumerate(charted)]


def _run(resources: list[dict[str, Any]]) -> tuple[Any, ModelResult]:
    inputs = build_model_inputs(ADAPTER, resources, AS_OF)
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    names = [spec.name for spec in declared_outputs(ADAPTER)]
    answers = session.run(names, dict(inputs.tensors))
    return inputs, interpret_outputs(ADAPTER, inputs, dict(zip(names, answers, strict=True)))


def test_a_news2_of_9_is_ranked_and_carded_above_a_news2_of_0() -> None:
    # NEWS2: RR 26 (3), SpO2 90 (3), oxygen (2), SBP 95 (2), HR 125 (2), T 38.5 (1), GCS 14 (3)
    sick_inputs, sick = _run([patient("1940-01-01"), *_vital_signs(26, 90, 40, 95, 125, 38.5, 14)])
    _, well = _run([patient("1980-01-01"), *_vital_signs(16, 98, 21, 125, 72, 36.8, 15)])
    assert sick.score is not None
    assert well.score is not None
    assert sick.score > well.score
    assert sick.band is not None
    assert well.band is not None
    assert (well.band.name, sick.band.name) == ("low", "high")
    # the outputs are read under the right names: log_odds is the score's logit
    logit = float(np.log(sick.score / (1 - sick.score)))
    assert sick.values["log_odds"] == pytest.approx(logit, abs=1e-3)
    rendering = CardRendering(model_version="1", patient_reference="Patient/p-1", card_id_seed="e")
    cards = render_cards(ADAPTER, sick_inputs, sick, rendering)
    assert [card.indicator for card in cards] == ["critical", "critical"]
    assert cards[0].summary.startswith("High risk of clinical deterioration: ")
    top = sick.basis[0]
    assert top.contribution == max(item.contribution or 0.0 for item in sick.basis)
    assert f"- {top.column.label}:" in cards[0].detail
    assert "- Glasgow coma score: 14 (2026-11-29 17:00 UTC)" in cards[0].detail


def test_a_missing_vital_sign_is_scored_as_missing_not_as_normal() -> None:
    # with a normal SpO2 (98 %), and with none: were a missing value imputed as a normal
    # one, the two would score the same
    everything = [patient("1950-01-01"), *_vital_signs(22, 98, 21, 105, 105, 38.2, 15)]
    without_spo2 = [r for r in everything if r.get("id") != "o-1"]
    _, observed = _run(everything)
    missing_inputs, missing = _run(without_spo2)
    assert not missing_inputs.tensors["present"][0, 1]
    spo2 = [i for i in missing.missing if i.column.name == "oxygen_saturation"]
    assert len(spo2) == 1
    assert spo2[0].value is None
    assert observed.score != missing.score
