"""The shared metric functions against values worked out by hand and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cdsflow.evaluation.classifier_metrics import (
    alert_figures,
    alerting,
    area_under_roc,
    auroc_bootstrap_interval,
    brier_score,
    calibration_bins,
    calibration_fit,
    roc_points,
)

OUTCOME = np.array([False, False, True, True])
SCORE = np.array([0.1, 0.4, 0.35, 0.8])


def test_area_under_roc_by_hand() -> None:
    # pairs (positive, negative): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert area_under_roc(OUTCOME, SCORE) == 0.75
    # a tie counts half
    assert area_under_roc(OUTCOME, np.array([0.1, 0.5, 0.5, 0.9])) == 0.875


def test_area_under_roc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(1)
    outcome = rng.random(3000) < 0.1
    score = np.round(rng.random(3000) + 0.3 * outcome, 1).astype(np.float64)  # many ties
    assert area_under_roc(outcome, score) == pytest.approx(roc_auc_score(outcome, score))
    assert area_under_roc(outcome, outcome.astype(np.float64)) == 1.0


def test_the_roc_curve_runs_from_corner_to_corner_through_the_thresholds() -> None:
    points = [(p.false_positive_rate, p.true_positive_rate) for p in roc_points(OUTCOME, SCORE)]
    assert points[0] == (0.0, 0.0)
    assert points[-1] == (1.0, 1.0)
    assert (0.5, 0.5) in points  # threshold 0.4: one of two negatives, one of two positives


def test_alerting_by_hand() -> None:
    alert = np.array([True, True, False, False, True])
    outcome = np.array([True, False, True, False, False])
    share, sensitivity, ppv = alerting(alert, outcome)
    assert (share, sensitivity) == (0.6, 0.5)
    assert ppv == pytest.approx(1 / 3)
    figures = alert_figures(SCORE, OUTCOME, 0.35)
    assert (figures.alert_share, figures.sensitivity) == (0.75, 1.0)
    assert figures.ppv == pytest.approx(2 / 3)
    nothing = alerting(np.zeros(4, dtype=bool), OUTCOME)
    assert nothing == (0.0, 0.0, 0.0)


def test_brier_score_by_hand() -> None:
    # (0.1-0)^2 + (0.4-0)^2 + (0.35-1)^2 + (0.8-1)^2 = 0.01 + 0.16 + 0.4225 + 0.04
    assert brier_score(SCORE, OUTCOME) == pytest.approx(0.6325 / 4)


def test_calibration_bins_are_equal_count_groups_by_risk() -> None:
    risk = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.7])
    outcome = np.array([True, False, False, True, True, False])
    bins = calibration_bins(risk, outcome, bins=3)
    assert [b.patients for b in bins] == [2, 2, 2]
    assert [b.mean_predicted for b in bins] == pytest.approx([0.15, 0.5, 0.85])
    assert [b.observed_rate for b in bins] == [0.0, 0.5, 1.0]


def test_calibration_fit_of_risks_drawn_from_themselves_is_near_zero_and_one() -> None:
    rng = np.random.default_rng(3)
    risk = 1 / (1 + np.exp(-rng.normal(-2.0, 1.2, 20_000)))
    outcome = rng.random(risk.size) < risk
    intercept, slope = calibration_fit(risk, outcome)
    assert intercept == pytest.approx(0.0, abs=0.1)
    assert slope == pytest.approx(1.0, abs=0.06)
    # risks pulled towards the mean (logits halved) are under-confident: slope about 2
    halved = 1 / (1 + np.exp(-0.5 * np.log(risk / (1 - risk))))
    assert calibration_fit(halved, outcome)[1] == pytest.approx(2.0, abs=0.15)


def test_the_bootstrap_interval_holds_the_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(4)
    outcome = rng.random(2000) < 0.1
    score = rng.random(2000) + 0.5 * outcome
    low, high = auroc_bootstrap_interval(outcome, score, seed=7)
    assert low < area_under_roc(outcome, score) < high
    assert high - low < 0.1
    assert auroc_bootstrap_interval(outcome, score, seed=7) == (low, high)
