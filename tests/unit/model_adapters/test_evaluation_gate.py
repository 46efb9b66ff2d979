from __future__ import annotations

from dataclasses import replace

from cdsflow.models import MeasuredPerformance, gate_failures

from .adapter_fixtures import deterioration_adapter

# the held-out figures of models/deterioration_risk/MODEL_CARD.md at risk >= 0.1
MEETS = MeasuredPerformance(
    auroc=0.790,
    sensitivity=0.531,
    ppv=0.294,
    alerts_per_100_patient_days=12.7,
    calibration_slope=0.950,
)


def test_the_shipped_gate_passes_the_model_cards_figures() -> None:
    evaluation = deterioration_adapter().evaluation
    assert evaluation is not None
    assert evaluation.alert_from_band == "moderate"
    assert gate_failures(evaluation.gate, MEETS) == []


def test_each_missed_bound_is_named() -> None:
    evaluation = deterioration_adapter().evaluation
    assert evaluation is not None
    worse = replace(
        MEETS,
        auroc=0.63,
        sensitivity=0.30,
        ppv=0.1,
        alerts_per_100_patient_days=18.0,
        calibration_slope=0.5,
    )
    failures = gate_failures(evaluation.gate, worse)
    assert len(failures) == 5
    assert failures[0] == "AUROC 0.630 is below the gate's 0.750"
    assert "18.0 alerts per 100 patient-days exceed the gate's 15" in failures
    assert "calibration slope 0.50 is outside [0.8, 1.2]" in failures


def test_a_bound_not_declared_is_not_checked() -> None:
    evaluation = deterioration_adapter().evaluation
    assert evaluation is not None
    open_gate = evaluation.gate.model_copy(update={"min_ppv": None})
    assert gate_failures(open_gate, replace(MEETS, ppv=0.01)) == []
