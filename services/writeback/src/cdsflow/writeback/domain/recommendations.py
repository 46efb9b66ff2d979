"""What the writeback needs from a `Recommendation`: its risk band, its score, its sanity.

The reasoner decides the band ("low", "medium", "high"); the writeback only maps it onto
the vocabularies it speaks (FHIR `risk-probability`, CDS Hooks indicators).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

from cdsflow.contracts import Mode, Recommendation, Score
from cdsflow.fhir import is_patient_reference

DETERIORATION_SCORE = "deterioration_score"


class RiskBand(Enum):
    """The risk bands the writeback understands, named as in FHIR `risk-probability`."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"


_BAND_SPELLINGS: dict[str, RiskBand] = {
    "low": RiskBand.LOW,
    "medium": RiskBand.MODERATE,
    "moderate": RiskBand.MODERATE,
    "high": RiskBand.HIGH,
}


def deterioration_score(recommendation: Recommendation) -> Score | None:
    """The score named `deterioration_score`, else the first score, else None."""
    for score in recommendation.scores:
        if score.name == DETERIORATION_SCORE:
            return score
    return recommendation.scores[0] if recommendation.scores else None


def risk_band(recommendation: Recommendation) -> RiskBand | None:
    """The band of the deterioration score; None when the band is missing or unknown."""
    score = deterioration_score(recommendation)
    if score is None:
        return None
    return _BAND_SPELLINGS.get(score.band.strip().lower())


def produced_at(recommendation: Recommendation) -> datetime:
    """When the reasoner produced it, as an aware UTC datetime."""
    return recommendation.produced_at.ToDatetime(tzinfo=UTC)


def is_active(recommendation: Recommendation) -> bool:
    """Only active-mode recommendations are shown and written back (unspecified is not)."""
    return recommendation.mode == Mode.MODE_ACTIVE


def mode_name(recommendation: Recommendation) -> str:
    """`active`, `shadow` or `unspecified`, for spans and metrics."""
    return {Mode.MODE_ACTIVE: "active", Mode.MODE_SHADOW: "shadow"}.get(
        recommendation.mode, "unspecified"
    )


def recommendation_problems(recommendation: Recommendation) -> list[str]:
    """Why this recommendation cannot be stored or written back; empty when it can.

    The problems name fields, never their values (which may identify a patient).
    """
    problems: list[str] = []
    if not recommendation.recommendation_id:
        problems.append("recommendation_id is empty")
    if not recommendation.patient_key:
        problems.append("patient_key is empty")
    if not is_patient_reference(recommendation.patient_reference):
        problems.append("patient_reference is not a Patient reference of the form Patient/<id>")
    if not recommendation.HasField("produced_at"):
        problems.append("produced_at is missing")
    score = deterioration_score(recommendation)
    if score is None:
        problems.append("scores is empty")
    elif not 0.0 <= score.value <= 1.0:
        problems.append("the deterioration score is not a probability between 0 and 1")
    return problems


def comes_from_ehr(recommendation: Recommendation, ehr_base_url: str) -> bool:
    """True unless the recommendation names another EHR than the one we write back to."""
    source = recommendation.ehr_base_url.rstrip("/")
    return not source or source == ehr_base_url.rstrip("/")


def may_be_kept(recommendation: Recommendation, ehr_base_url: str) -> bool:
    """Whether the recommendation may enter the card store: valid and from our EHR (the
    consumer group dead-letters the others; every replica's read-back skips them)."""
    return not recommendation_problems(recommendation) and comes_from_ehr(
        recommendation, ehr_base_url
    )
