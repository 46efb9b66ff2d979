"""The held-out figures: AUROC from ranks agrees with scikit-learn's, ties included, and the
calibration fit finds a miscalibration that was put in."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cdsflow.training.held_out_metrics import area_under_roc, measure


def test_area_under_roc_matches_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(1)
    outcome = rng.random(3000) < 0.1
    score = np.round(rng.random(3000) + 0.3 * outcome, 1).astype(np.float64)  # many ties
    assert area_under_roc(outcome, score) == pytest.approx(roc_auc_score(outcome, score))
    assert area_under_roc(outcome, outcome.astype(np.float64)) == 1.0


def test_calibration_slope_finds_overconfidence() -> None:
    rng = np.random.default_rng(2)
    true_logit = rng.normal(-2.5, 1.0, 8000)
    outcome = rng.random(true_logit.size) < 1 / (1 + np.exp(-true_logit))
    overconfident = 1 / (1 + np.exp(-2 * true_logit))  # logits doubled: slope ~0.5
    news2 = np.zeros(true_logit.size, dtype=np.int64)
    metrics = measure(overconfident, outcome, news2, seed=0, subgroups={})
    assert metrics.calibration_slope == pytest.approx(0.5, abs=0.1)
    assert metrics.auroc_95ci[0] < metrics.auroc < metrics.auroc_95ci[1]
    assert metrics.news2_auroc == 0.5
