"""A version's figures: alerts per 100 patient-days from the dataset's observation days, the
gate's figures, subgroups where figures cannot be estimated, and the report built from them."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from cdsflow.evaluation.evaluation_report import html_report, summary_json, summary_lines
from cdsflow.evaluation.evaluation_run import EvaluationResult, VersionEvaluation
from cdsflow.evaluation.labelled_dataset import LabelledPatient
from cdsflow.evaluation.patient_subgroups import age_band, sex, subgroup_rows
from cdsflow.evaluation.version_performance import Mask, Values, version_performance
from cdsflow.models import gate_failures
from cdsflow.models.card_schema import EvaluationGate

AS_OF = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _patient(birth_date: str | None, gender: str | None) -> LabelledPatient:
    patient: dict[str, str] = {"resourceType": "Patient", "id": "p"}
    if birth_date is not None:
        patient["birthDate"] = birth_date
    if gender is not None:
        patient["gender"] = gender
    return LabelledPatient("p", AS_OF, False, 1.0, patient, (patient,))


@pytest.mark.parametrize(
    ("birth_date", "band"),
    [
        ("1961-06-16", "age < 65"),  # 64 the day before the 65th birthday
        ("1961-06-15", "age 65-79"),
        ("1946-06-16", "age 65-79"),
        ("1946-06-15", "age >= 80"),
        (None, "age unknown"),
        ("not a date", "age unknown"),
    ],
)
def test_age_band_in_completed_years_at_as_of(birth_date: str | None, band: str) -> None:
    assert age_band(_patient(birth_date, "female")) == band


def test_sex_and_non_empty_subgroups() -> None:
    patients = [_patient("1990-01-01", "female"), _patient(None, "male"), _patient(None, None)]
    assert [sex(p) for p in patients] == ["female", "male", "unknown"]
    rows = subgroup_rows(patients)
    assert list(rows) == ["age < 65", "age unknown", "female", "male", "unknown"]
    assert rows["age unknown"].tolist() == [False, True, True]


def _figures() -> tuple[Values, Mask, Mask, Values]:
    risk = np.array([0.05, 0.2, 0.6, 0.1, 0.3, 0.02, 0.7, 0.01, 0.04, 0.5])
    outcome = np.array([False, False, True, False, True, False, True, False, False, False])
    alert = risk >= 0.25
    days = np.full(10, 2.0)
    return risk, alert, outcome, days


def test_alerts_per_100_patient_days_and_the_gate_figures() -> None:
    risk, alert, outcome, days = _figures()
    groups = {"first half": np.arange(10) < 5, "no outcome": ~outcome}
    performance = version_performance(risk, alert, outcome, days, groups, seed=1)
    overall = performance.overall
    # 4 alerts (0.6, 0.3, 0.7, 0.5) over 10 patients x 2 days
    assert overall.alerts == 4
    assert overall.alerts_per_100_patient_days == 20.0
    assert overall.sensitivity == 1.0
    assert overall.ppv == 0.75
    assert overall.auroc == pytest.approx(20 / 21)  # 0.5 ranks above the positive 0.3
    measured = performance.measured()
    assert measured.alerts_per_100_patient_days == 20.0
    gate = EvaluationGate(min_auroc=0.99, max_alerts_per_100_patient_days=15)
    failures = gate_failures(gate, measured)
    assert len(failures) == 2
    assert failures[0].startswith("AUROC 0.952 is below")
    only_negatives = performance.subgroups[1]
    assert (only_negatives.auroc, only_negatives.auroc_95ci) == (None, None)
    assert (only_negatives.calibration_slope, only_negatives.sensitivity) == (None, 0.0)
    # a calibration slope that cannot be estimated fails a gate that bounds it
    assert math.isnan(
        version_performance(risk[:3], alert[:3], outcome[:3], days[:3], {}, 1)
        .measured()
        .calibration_slope
    )


def _result(failures: tuple[str, ...]) -> EvaluationResult:
    risk, alert, outcome, days = _figures()
    performance = version_performance(risk, alert, outcome, days, {"small": risk < 0.3}, 1)
    version = VersionEvaluation(
        "1", "active", 10, 0, {"heart_rate: above-range": 2}, performance, failures
    )
    return EvaluationResult(
        adapter_id="deterioration-risk",
        adapter_title="Deterioration <risk>",
        model="deterioration_risk",
        dataset=Path("datasets/x"),
        patients=10,
        positives=3,
        alert_from_band="moderate",
        alert_threshold=0.25,
        gate=EvaluationGate(min_auroc=0.99),
        versions=(version,),
    )


def test_the_report_has_both_plots_the_verdict_and_no_nan_in_json() -> None:
    failed = _result(("AUROC 0.952 is below the gate's 0.990",))
    assert not failed.passed
    page = html_report(failed)
    assert page.count("<svg") == 2
    assert "Deterioration &lt;risk&gt;" in page
    assert "AUROC 0.952 is below the gate&#x27;s 0.990" in page
    summary = summary_json(failed)
    text = json.dumps(summary, allow_nan=False)  # calibration of "small" is null, not NaN
    assert json.loads(text)["versions"][0]["gate_failures"] == list(
        failed.versions[0].gate_failures
    )
    lines = summary_lines(failed)
    assert "gate: NOT met" in lines[2]
    assert lines[3] == "    failed: AUROC 0.952 is below the gate's 0.990"
    assert _result(()).passed
