"""NEWS2 points (Royal College of Physicians 2017, SpO2 scale 1): the comparator the trained
model is measured against, and the yardstick of the generator's tests.

NEWS2 bands (inclusive upper band edges); a parameter that was not observed scores 0, as
NEWS2 charts do in practice.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cdsflow.training.model_inputs import VITAL_SIGN_NAMES

# per parameter: inclusive upper band edges, and the points of each band (one more)
NEWS2_BANDS: dict[str, tuple[tuple[float, ...], tuple[int, ...]]] = {
    "respiratory_rate": ((8.0, 11.0, 20.0, 24.0), (3, 1, 0, 2, 3)),
    "oxygen_saturation": ((91.0, 93.0, 95.0), (3, 2, 1, 0)),
    "inhaled_oxygen_concentration": ((21.0,), (0, 2)),
    "systolic_blood_pressure": ((90.0, 100.0, 110.0, 219.0), (3, 2, 1, 0, 3)),
    "heart_rate": ((40.0, 50.0, 90.0, 110.0, 130.0), (3, 1, 0, 1, 2, 3)),
    "body_temperature": ((35.0, 36.0, 38.0, 39.0), (3, 1, 0, 1, 2)),
    "glasgow_coma_score": ((14.0,), (3, 0)),
}


def news2_points(vital_signs: npt.ArrayLike, present: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The NEWS2 aggregate per row, from [rows, 7] values and presence (vital-sign order)."""
    values = np.asarray(vital_signs, dtype=np.float32).reshape(-1, len(VITAL_SIGN_NAMES))
    observed = np.asarray(present, dtype=bool).reshape(values.shape) & np.isfinite(values)
    total = np.zeros(len(values), dtype=np.int64)
    for column, name in enumerate(VITAL_SIGN_NAMES):
        edges, points = NEWS2_BANDS[name]
        band = np.searchsorted(np.asarray(edges, dtype=np.float32), values[:, column], "left")
        total += np.where(observed[:, column], np.asarray(points)[band], 0)
    return total
