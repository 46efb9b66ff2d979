from __future__ import annotations

import json
from dataclasses import replace

from cdsflow.models import MeasuredPerformance, gate_failures
from cdsflow.models.risk_bands import alert_threshold

from .adapter_fixtures import REPO_ROOT, deterioration_adapter

HELD_OUT_METRICS = REPO_ROOT / "models" / "deterioration_risk" / "held_out_metrics.json"


def _measured_at_the_adapters_alert_threshold() -> MeasuredPerformance:
    """The model's held-out figures, as written by its training run, at the threshold that the
    adapter's alert band starts at. One prediction per held-out patient: taken as one
    patient-day each, the share of patients alerted x 100 is the alerts per 100 patient-days."""
    adapter = deterioration_adapter()
    assert adapter.evaluation is not None
    threshold = alert_threshold(adapter.risk_bands, adapter.evaluation.alert_from_band)
    metrics = json.loads(HELD_OUT_METRICS.read_text(encoding="utf-8"))
    (at,) = [row for row in metrics["at_risk_thresholds"] if row["threshold"] == threshold]
    return MeasuredPerformance(
        auroc=metrics["auroc"],
        sensitivity=at["sensitivity"],
        ppv=at["ppv"],
        alerts_per_100_patient_days=100 * at["alert_share"],
        calibration_slope=metrics["calibration_slope"],
    )


MEETS = _measured_at_the_adapters_alert_threshold()


def test_the_shipped_gate_passes_the_models_held_out_figures() -> None:
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
