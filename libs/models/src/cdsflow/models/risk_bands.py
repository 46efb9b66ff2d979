"""The band a score falls in, as the adapter declares its bands (lowest first)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from cdsflow.models.card_schema import RiskBand


def band_of(bands: Sequence[RiskBand], score: float) -> RiskBand:
    """The last band whose `from` is at or below `score` (the first band has no `from`)."""
    if not bands:
        raise ValueError("no risk bands declared")
    if not math.isfinite(score):
        raise ValueError("a score must be finite")
    chosen = bands[0]
    for band in bands[1:]:
        if band.from_score is not None and score >= band.from_score:
            chosen = band
    return chosen


def is_at_or_above(bands: Sequence[RiskBand], band: RiskBand, threshold: str) -> bool:
    """True when `band` is the band named `threshold` or a higher one (e.g. for alerting)."""
    names = [b.name for b in bands]
    return names.index(band.name) >= names.index(threshold)


def alert_threshold(bands: Sequence[RiskBand], alert_from_band: str) -> float:
    """The lowest score that alerts: the `from` of the named band (-inf for the first)."""
    band = next(b for b in bands if b.name == alert_from_band)
    return band.from_score if band.from_score is not None else -math.inf
