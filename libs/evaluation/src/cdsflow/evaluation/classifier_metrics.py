"""How well risk scores separate and fit a binary outcome: discrimination (AUROC with a
bootstrap interval, the ROC curve), calibration (logistic intercept and slope, equal-count
bins) and alerting at a threshold. Pure numpy/scipy/scikit-learn; shared by `cdsflow
evaluate` and the training run's model card."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve

BOOTSTRAP_RESAMPLES = 500
Outcome = npt.NDArray[np.bool_]
Scores = npt.NDArray[np.float64]


def area_under_roc(outcome: Outcome, score: Scores) -> float:
    """Area under the ROC curve: the chance that a random patient who had the outcome scores
    above a random one who did not (ties count half), from the ranks (Mann-Whitney U)."""
    positives = int(outcome.sum())
    negatives = len(outcome) - positives
    ranks = rankdata(score)  # average ranks for ties
    u = ranks[outcome].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def has_both_outcomes(outcome: Outcome) -> bool:
    return bool(outcome.any() and not outcome.all())


def auroc_bootstrap_interval(
    outcome: Outcome, score: Scores, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """The 95 % percentile interval of the AUROC over `resamples` bootstrap resamples of the
    patients (resamples with a single outcome are skipped)."""
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(resamples):
        sample = rng.integers(0, len(score), len(score))
        if has_both_outcomes(outcome[sample]):
            estimates.append(area_under_roc(outcome[sample], score[sample]))
    low, high = np.percentile(estimates, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class RocPoint:
    false_positive_rate: float
    true_positive_rate: float


def roc_points(outcome: Outcome, score: Scores) -> tuple[RocPoint, ...]:
    """The ROC curve's corners, from (0, 0) to (1, 1)."""
    fpr, tpr, _ = roc_curve(outcome, score, drop_intermediate=True)
    return tuple(RocPoint(float(f), float(t)) for f, t in zip(fpr, tpr, strict=True))


@dataclass(frozen=True)
class AlertFigures:
    threshold: float
    alert_share: float  # of patients at or above the threshold
    sensitivity: float
    ppv: float


def alert_figures(score: Scores, outcome: Outcome, threshold: float) -> AlertFigures:
    """Alerting on `score >= threshold` (sensitivity and PPV are 0 when nothing counts)."""
    share, sensitivity, ppv = alerting(score >= threshold, outcome)
    return AlertFigures(threshold, share, sensitivity, ppv)


def alerting(alert: Outcome, outcome: Outcome) -> tuple[float, float, float]:
    """The share of patients alerted, the sensitivity and the PPV of `alert` (each 0 when
    there is nothing to count)."""
    true_alerts = int((alert & outcome).sum())
    return (
        float(alert.mean()) if len(alert) else 0.0,
        true_alerts / max(int(outcome.sum()), 1),
        true_alerts / max(int(alert.sum()), 1),
    )


def brier_score(risk: Scores, outcome: Outcome) -> float:
    return float(np.mean((risk - outcome) ** 2))


def calibration_fit(risk: Scores, outcome: Outcome) -> tuple[float, float]:
    """Intercept and slope of the logistic recalibration of the outcome on logit(risk):
    (0, 1) is perfect; a slope below 1 means over-confident risks."""
    p = np.clip(risk, 1e-9, 1 - 1e-9)
    logit = np.log(p / (1 - p)).reshape(-1, 1)
    fit = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000).fit(logit, outcome)
    return float(fit.intercept_[0]), float(fit.coef_[0, 0])


@dataclass(frozen=True)
class CalibrationBin:
    mean_predicted: float
    observed_rate: float
    patients: int


def calibration_bins(risk: Scores, outcome: Outcome, bins: int = 10) -> tuple[CalibrationBin, ...]:
    """The binned calibration curve: patients sorted by risk, cut into `bins` equal-count
    groups (deciles by default), each group's mean risk against its observed rate."""
    order = np.argsort(risk, kind="stable")
    return tuple(
        CalibrationBin(float(risk[part].mean()), float(outcome[part].mean()), int(part.size))
        for part in np.array_split(order, bins)
        if part.size
    )
