"""Risk bands of the deterioration score.

The model's score is logistic(0.75 x (points - 5)) of its NEWS2-style aggregate, so the
thresholds below fall on NEWS2's published aggregate thresholds (RCP 2017):

| band   | deterioration_score | NEWS2 aggregate | NEWS2 clinical response |
|--------|---------------------|-----------------|-------------------------|
| low    | < 0.5               | 0-4             | ward-based response     |
| medium | >= 0.5 and < 0.8    | 5-6             | urgent response         |
| high   | >= 0.8              | 7 or more       | emergency response      |
"""

from __future__ import annotations

from enum import StrEnum

MEDIUM_RISK_FROM = 0.5
HIGH_RISK_FROM = 0.8


class RiskBand(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def risk_band(deterioration_score: float) -> RiskBand:
    if deterioration_score >= HIGH_RISK_FROM:
        return RiskBand.HIGH
    if deterioration_score >= MEDIUM_RISK_FROM:
        return RiskBand.MEDIUM
    return RiskBand.LOW
