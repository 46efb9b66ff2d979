"""The training's NEWS2 comparator scores exactly like the served `deterioration_score`."""

from __future__ import annotations

import numpy as np

from cdsflow.training.news2 import news2_points
from tests.unit.models.model_files import load_early_warning


def test_news2_points_match_the_deterioration_score_model() -> None:
    rng = np.random.default_rng(5)
    rows = 2000
    values = np.column_stack(
        [
            rng.integers(4, 40, rows),
            rng.integers(80, 101, rows),
            rng.choice([21, 24, 28, 40], rows),
            rng.integers(60, 240, rows),
            rng.integers(30, 160, rows),
            np.round(rng.uniform(34, 41, rows), 1),
            rng.integers(3, 16, rows),
        ]
    ).astype(np.float32)
    present = rng.random(values.shape) > 0.2
    early_warning = load_early_warning()
    expected = early_warning.early_warning_points(early_warning.vital_sign_points(values, present))[
        :, 0
    ]
    np.testing.assert_array_equal(news2_points(values, present), expected.astype(np.int64))
    assert news2_points(values, present).max() >= 7
