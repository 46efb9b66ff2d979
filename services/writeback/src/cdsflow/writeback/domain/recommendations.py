"""What the writeback needs from a `Recommendation`: its adapter, its risk band, its score,
its sanity.

The reasoner decides the band (the adapter's band names, e.g. "low", "moderate", "high");
the writeback only maps the ones it knows onto the vocabularies it speaks (FHIR
`risk-probability`, CDS Hooks indicators). Nothing here assumes which model it was: the
score is the adapter's (the one with a band), whatever its name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum

from cdsflow.contracts import Mode, Recommendation, Score
from cdsflow.fhir import is_patient_reference

# a recommendation published before adapters named themselves came from this one
LEGACY_ADAPTER_ID = "deterioration-risk"


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


def adapter_of(recommendation: Recommendation) -> str:
    """The id of the model adapter that produced it (`deterioration-risk` for a message that
    predates `adapter_id`: the only model the reasoner ran then)."""
    return recommendation.adapter_id or LEGACY_ADAPTER_ID


def seconds_since_received(recommendation: Recommendation, now: float) -> float | None:
    """Seconds from the listener receiving the change to `now` (epoch seconds); None when the
    recommendation does not say when (one from before the field existed)."""
    if not recommendation.HasField("event_received_at"):
        return None
    received = recommendation.event_received_at
    return max(0.0, now - (received.seconds + received.nanos / 1e9))


def banded_score(recommendation: Recommendation) -> Score | None:
    """The adapter's score, whatever its name: the reasoner puts it first, with its band
    (`recommendation_message`); the other named values have none. The first score with a
    band, else the first score (an adapter without bands), else None."""
    for score in recommendation.scores:
        if score.band:
            return score
    return recommendation.scores[0] if recommendation.scores else None


def risk_band(recommendation: Recommendation) -> RiskBand | None:
    """The band of the banded score; None when the band is missing or not one of these."""
    score = banded_score(recommendation)
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
    score = banded_score(recommendation)
    if score is None:
        problems.append("scores is empty")
    elif not 0.0 <= score.value <= 1.0:
        problems.append("the score is not a probability between 0 and 1")
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
