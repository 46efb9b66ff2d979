"""What the model card reports, measured on the held-out set: discrimination, calibration,
and alerting at thresholds, beside NEWS2 on the same patients."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression

RISK_THRESHOLDS = (0.1, 0.2, 0.3)
NEWS2_THRESHOLDS = (5, 7)
BOOTSTRAP_RESAMPLES = 500


def area_under_roc(outcome: npt.NDArray[np.bool_], score: npt.NDArray[np.float64]) -> float:
    """Area under the ROC curve: the chance that a random patient who deteriorated scores
    above a random one who did not (ties count half), from the ranks (Mann-Whitney U)."""
    positives = int(outcome.sum())
    negatives = len(outcome) - positives
    ranks = rankdata(score)  # average ranks for ties
    u = ranks[outcome].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


@dataclass(frozen=True)
class AlertFigures:
    threshold: float
    alert_share: float  # of patients at or above the threshold
    sensitivity: float
    ppv: float


@dataclass(frozen=True)
class CalibrationBin:
    mean_predicted: float
    observed_rate: float
    patients: int


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


def _alerts(
    score: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_], threshold: float
) -> AlertFigures:
    alert = score >= threshold
    true_alerts = int((alert & outcome).sum())
    return AlertFigures(
        threshold=threshold,
        alert_share=float(alert.mean()),
        sensitivity=true_alerts / max(int(outcome.sum()), 1),
        ppv=true_alerts / max(int(alert.sum()), 1),
    )


def _calibration(
    risk: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_]
) -> tuple[float, float]:
    """Intercept and slope of the logistic recalibration of the outcome on logit(risk)."""
    p = np.clip(risk, 1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p)).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000).fit(logit, outcome)
    return float(fit.intercept_[0]), float(fit.coef_[0, 0])


def _deciles(
    risk: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_]
) -> tuple[CalibrationBin, ...]:
    order = np.argsort(risk, kind="stable")
    return tuple(
        CalibrationBin(float(risk[part].mean()), float(outcome[part].mean()), int(part.size))
        for part in np.array_split(order, 10)
    )


def _auroc_interval(
    risk: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_], seed: int
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        sample = rng.integers(0, len(risk), len(risk))
        if outcome[sample].any() and not outcome[sample].all():
            estimates.append(area_under_roc(outcome[sample], risk[sample]))
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(low), float(high)


def _subgroup(
    name: str, risk: npt.NDArray[np.float64], outcome: npt.NDArray[np.bool_]
) -> SubgroupFigures:
    both_outcomes = bool(outcome.any() and not outcome.all())
    return SubgroupFigures(
        subgroup=name,
        patients=len(risk),
        deteriorated=int(outcome.sum()),
        auroc=area_under_roc(outcome, risk) if both_outcomes else None,
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
    intercept, slope = _calibration(risk, outcome)
    return HeldOutMetrics(
        patients=len(risk),
        deteriorated=int(outcome.sum()),
        auroc=area_under_roc(outcome, risk),
        auroc_95ci=_auroc_interval(risk, outcome, seed),
        brier_score=float(np.mean((risk - outcome) ** 2)),
        calibration_intercept=intercept,
        calibration_slope=slope,
        mean_predicted=float(risk.mean()),
        observed_rate=float(outcome.mean()),
        calibration_deciles=_deciles(risk, outcome),
        at_risk_thresholds=tuple(_alerts(risk, outcome, t) for t in RISK_THRESHOLDS),
        news2_auroc=area_under_roc(outcome, news2.astype(np.float64)),
        news2_at_thresholds=tuple(
            _alerts(news2.astype(np.float64), outcome, t) for t in NEWS2_THRESHOLDS
        ),
        subgroups=tuple(
            _subgroup(name, risk[rows], outcome[rows]) for name, rows in subgroups.items()
        ),
    )
