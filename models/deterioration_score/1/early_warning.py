"""NEWS2-style early warning points and the deterioration score, numpy only.

Pure functions shared by the Triton python backend (`model.py`) and the unit tests. The
bands follow the published National Early Warning Score 2 (Royal College of Physicians,
2017), SpO2 scale 1. Band edges are inclusive upper bounds, so a value between two
published integer bands (a respiratory rate of 11.5) falls into the higher band's range
only once it exceeds the lower band's upper edge.

A missing vital sign scores 0 points: the score reflects what has been observed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]

# Input tensor layout: one column per vital sign, in this order.
VITAL_SIGNS: tuple[str, ...] = (
    "respiratory_rate",  # /min
    "oxygen_saturation",  # %
    "inhaled_oxygen_concentration",  # %, 21 on room air
    "systolic_blood_pressure",  # mm[Hg]
    "heart_rate",  # /min
    "body_temperature",  # Cel
    "glasgow_coma_score",  # {score}, 3..15
)

# Per vital sign: (inclusive upper band edges, points per band). A value v scores
# points[i] for the first edge i with v <= edges[i], and points[-1] above the last edge.
_AIR_OXYGEN_PERCENT = 21.0
BANDS: dict[str, tuple[tuple[float, ...], tuple[int, ...]]] = {
    # <=8: 3, 9-11: 1, 12-20: 0, 21-24: 2, >=25: 3
    "respiratory_rate": ((8.0, 11.0, 20.0, 24.0), (3, 1, 0, 2, 3)),
    # <=91: 3, 92-93: 2, 94-95: 1, >=96: 0
    "oxygen_saturation": ((91.0, 93.0, 95.0), (3, 2, 1, 0)),
    # air: 0, any supplemental oxygen: 2
    "inhaled_oxygen_concentration": ((_AIR_OXYGEN_PERCENT,), (0, 2)),
    # <=90: 3, 91-100: 2, 101-110: 1, 111-219: 0, >=220: 3
    "systolic_blood_pressure": ((90.0, 100.0, 110.0, 219.0), (3, 2, 1, 0, 3)),
    # <=40: 3, 41-50: 1, 51-90: 0, 91-110: 1, 111-130: 2, >=131: 3
    "heart_rate": ((40.0, 50.0, 90.0, 110.0, 130.0), (3, 1, 0, 1, 2, 3)),
    # <=35.0: 3, 35.1-36.0: 1, 36.1-38.0: 0, 38.1-39.0: 1, >=39.1: 2
    "body_temperature": ((35.0, 36.0, 38.0, 39.0), (3, 1, 0, 1, 2)),
    # alert (GCS 15): 0; new confusion, voice, pain or unresponsive (GCS <= 14): 3
    "glasgow_coma_score": ((14.0,), (3, 0)),
}

# deterioration_score = logistic(SLOPE * (points - MIDPOINT)): 0.5 at 5 points (NEWS2's
# urgent-response threshold), about 0.82 at 7 points (its emergency-response threshold).
SCORE_MIDPOINT_POINTS = 5.0
SCORE_SLOPE = 0.75


def vital_sign_points(vital_signs: npt.ArrayLike, present: npt.ArrayLike) -> Floats:
    """Points per vital sign, shape [batch, 7]; missing or non-finite values score 0."""
    values = np.asarray(vital_signs, dtype=np.float32).reshape(-1, len(VITAL_SIGNS))
    observed = np.asarray(present, dtype=bool).reshape(values.shape) & np.isfinite(values)
    points = np.zeros(values.shape, dtype=np.float32)
    for column, name in enumerate(VITAL_SIGNS):
        edges, band_points = BANDS[name]
        band = np.searchsorted(np.asarray(edges, dtype=np.float32), values[:, column], "left")
        points[:, column] = np.asarray(band_points, dtype=np.float32)[band]
    scored: Floats = np.where(observed, points, np.float32(0.0))
    return scored


def early_warning_points(points_per_vital_sign: Floats) -> Floats:
    """The aggregate score, shape [batch, 1]."""
    aggregate: Floats = points_per_vital_sign.sum(axis=1, keepdims=True, dtype=np.float32)
    return aggregate


def deterioration_score(aggregate_points: Floats) -> Floats:
    """Logistic of the aggregate points, in [0, 1], same shape as the input."""
    exponent = -SCORE_SLOPE * (aggregate_points.astype(np.float64) - SCORE_MIDPOINT_POINTS)
    score: Floats = (1.0 / (1.0 + np.exp(exponent))).astype(np.float32)
    return score
