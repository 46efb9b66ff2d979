"""One model version's performance on a labelled set: the figures the adapter's gate bounds
(AUROC, sensitivity and PPV at the alert band, alerts per 100 patient-days, calibration
slope), with the AUROC interval, calibration intercept and curve, the ROC curve, and the same
figures per subgroup."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.exceptions import ConvergenceWarning

from cdsflow.evaluation.classifier_metrics import (
    CalibrationBin,
    RocPoint,
    alerting,
    area_under_roc,
    auroc_bootstrap_interval,
    brier_score,
    calibration_bins,
    calibration_fit,
    has_both_outcomes,
    roc_points,
)
from cdsflow.models import MeasuredPerformance

CALIBRATION_BINS = 10
Mask = npt.NDArray[np.bool_]
Values = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GroupPerformance:
    """Figures on a set of patients; None where they cannot be estimated there (one outcome
    only, or a calibration fit that does not converge)."""

    name: str
    patients: int
    positives: int
    auroc: float | None
    auroc_95ci: tuple[float, float] | None
    sensitivity: float
    ppv: float
    alerts: int
    alert_share: float
    alerts_per_100_patient_days: float
    calibration_intercept: float | None
    calibration_slope: float | None
    brier_score: float
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class VersionPerformance:
    overall: GroupPerformance
    subgroups: tuple[GroupPerformance, ...]
    roc_curve: tuple[RocPoint, ...]
    calibration_curve: tuple[CalibrationBin, ...]

    def measured(self) -> MeasuredPerformance:
        """The figures the gate bounds (NaN where not estimable, which fails any bound)."""
        overall = self.overall
        return MeasuredPerformance(
            auroc=_or_nan(overall.auroc),
            sensitivity=overall.sensitivity,
            ppv=overall.ppv,
            alerts_per_100_patient_days=overall.alerts_per_100_patient_days,
            calibration_slope=_or_nan(overall.calibration_slope),
        )


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _calibration(risk: Values, outcome: Mask) -> tuple[float | None, float | None]:
    if int(outcome.sum()) < 2 or int((~outcome).sum()) < 2:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            return calibration_fit(risk, outcome)
        except ConvergenceWarning:
            return None, None


def group_performance(
    name: str,
    risk: Values,
    alert: Mask,
    outcome: Mask,
    observation_days: Values,
    seed: int,
) -> GroupPerformance:
    both = has_both_outcomes(outcome)
    alert_share, sensitivity, ppv = alerting(alert, outcome)
    intercept, slope = _calibration(risk, outcome)
    return GroupPerformance(
        name=name,
        patients=len(risk),
        positives=int(outcome.sum()),
        auroc=area_under_roc(outcome, risk) if both else None,
        auroc_95ci=auroc_bootstrap_interval(outcome, risk, seed) if both else None,
        sensitivity=sensitivity,
        ppv=ppv,
        alerts=int(alert.sum()),
        alert_share=alert_share,
        alerts_per_100_patient_days=100 * float(alert.sum()) / float(observation_days.sum()),
        calibration_intercept=intercept,
        calibration_slope=slope,
        brier_score=brier_score(risk, outcome),
        mean_predicted=float(risk.mean()),
        observed_rate=float(outcome.mean()),
    )


def version_performance(
    risk: Values,
    alert: Mask,
    outcome: Mask,
    observation_days: Values,
    subgroups: dict[str, Mask],
    seed: int,
) -> VersionPerformance:
    """`alert` is each patient's result at or above the adapter's alert band."""
    return VersionPerformance(
        overall=group_performance("all patients", risk, alert, outcome, observation_days, seed),
        subgroups=tuple(
            group_performance(
                name, risk[rows], alert[rows], outcome[rows], observation_days[rows], seed
            )
            for name, rows in subgroups.items()
        ),
        roc_curve=roc_points(outcome, risk) if has_both_outcomes(outcome) else (),
        calibration_curve=calibration_bins(risk, outcome, CALIBRATION_BINS),
    )
