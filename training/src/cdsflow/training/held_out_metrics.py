"""What the model card reports, measured on the held-out set: discrimination, calibration,
and alerting at thresholds, beside NEWS2 on the same patients (the metric functions are
`cdsflow.evaluation.classifier_metrics`, shared with `cdsflow evaluate`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from cdsflow.evaluation.classifier_metrics import (
    AlertFigures,
    CalibrationBin,
    alert_figures,
    area_under_roc,
    auroc_bootstrap_interval,
    brier_score,
    calibration_bins,
    calibration_fit,
    has_both_outcomes,
)

RISK_THRESHOLDS = (0.1, 0.2, 0.3)
NEWS2_THRESHOLDS = (5, 7)


@dataclass(frozen=True)
class SubgroupFigures:
    subgroup: str
    patients: int
    deteriorated: int
    auroc: float | None  # None when the subgroup has only one outcome
    mean_predicted: float
    observed_rate: float


@dataclass(frozen=True)
class HeldOutMetrics:
    patients: int
    deteriorated: int
    auroc: float
    auroc_95ci: tuple[float, float]
    brier_score: float
    calibration_intercept: float
    calibration_slope: float
    mean_predicted: float
    observed_rate: float
    calibration_deciles: tuple[CalibrationBin, ...]
    at_risk_thresholds: tuple[AlertFigures, ...]
    news2_auroc: float
    news2_at_thresholds: tuple[AlertFigures, ...]
    subgroups: tuple[SubgroupFigures, ...]
    # the generator's own outcome probability on the same patients: the ceiling (None when
    # measured from files only, which do not hold it)
    generator_risk_auroc: float | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _subgroup(
    name: str, risk: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_]
) -> SubgroupFigures:
    return SubgroupFigures(
        subgroup=name,
        patients=len(risk),
        deteriorated=int(outcome.sum()),
        auroc=area_under_roc(outcome, risk) if has_both_outcomes(outcome) else None,
        mean_predicted=float(risk.mean()) if len(risk) else float("nan"),
        observed_rate=float(outcome.mean()) if len(risk) else float("nan"),
    )


def measure(
    risk: npt.NDArray[np.float64],
    outcome: npt.NDArray[np.bool_],
    news2: npt.NDArray[np.int64],
    seed: int,
    subgroups: dict[str, npt.NDArray[np.bool_]],
) -> HeldOutMetrics:
    """The figures; `subgroups` maps a subgroup's name to its rows (a boolean mask)."""
    intercept, slope = calibration_fit(risk, outcome)
    return HeldOutMetrics(
        patients=len(risk),
        deteriorated=int(outcome.sum()),
        auroc=area_under_roc(outcome, risk),
        auroc_95ci=auroc_bootstrap_interval(outcome, risk, seed),
        brier_score=brier_score(risk, outcome),
        calibration_intercept=intercept,
        calibration_slope=slope,
        mean_predicted=float(risk.mean()),
        observed_rate=float(outcome.mean()),
        calibration_deciles=calibration_bins(risk, outcome, bins=10),
        at_risk_thresholds=tuple(alert_figures(risk, outcome, t) for t in RISK_THRESHOLDS),
        news2_auroc=area_under_roc(outcome, news2.astype(np.float64)),
        news2_at_thresholds=tuple(
            alert_figures(news2.astype(np.float64), outcome, t) for t in NEWS2_THRESHOLDS
        ),
        subgroups=tuple(
            _subgroup(name, risk[rows], outcome[rows]) for name, rows in subgroups.items()
        ),
    )
