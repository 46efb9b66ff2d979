"""The held-out figures: the calibration fit finds a miscalibration that was put in (the metric
functions themselves are tested in tests/unit/evaluation/test_classifier_metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cdsflow.training.held_out_metrics import measure


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
