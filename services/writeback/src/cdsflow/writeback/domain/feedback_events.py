"""A CDS Hooks feedback entry as the `Feedback` event published on `cdsflow.feedback.v1`,
and its labels for metrics."""

from __future__ import annotations

import re
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from cdsflow.contracts import Feedback, FeedbackOutcome, Indicator
from cdsflow.writeback.domain.cards import cards_for
from cdsflow.writeback.domain.feedback_requests import ACCEPTED, FeedbackEntry
from cdsflow.writeback.domain.latest_recommendations import StoredRecommendation

_OUTCOMES = {
    ACCEPTED: FeedbackOutcome.FEEDBACK_OUTCOME_ACCEPTED,
    "overridden": FeedbackOutcome.FEEDBACK_OUTCOME_OVERRIDDEN,
}
_INDICATORS: dict[str, Indicator.ValueType] = {
    "info": Indicator.INDICATOR_INFO,
    "warning": Indicator.INDICATOR_WARNING,
    "critical": Indicator.INDICATOR_CRITICAL,
}
_REASON_LABEL = re.compile(r"[A-Za-z0-9._-]{1,40}")


def feedback_event(
    entry: FeedbackEntry,
    *,
    cds_service: str,
    received_at: datetime,
    shown: StoredRecommendation | None,
) -> Feedback:
    """The event for one entry; `shown` is the recommendation whose card it names, when the
    writeback still holds it (then the patient key, model and indicator travel with it)."""
    event = Feedback(
        feedback_id=entry.feedback_id,
        card_uuid=entry.card_uuid,
        cds_service=cds_service,
        outcome=_OUTCOMES[entry.outcome],
        accepted_suggestions=list(entry.accepted_suggestions),
        outcome_at=_timestamp(entry.outcome_at),
        received_at=_timestamp(received_at),
    )
    if entry.override_reason is not None:
        event.override_reason_system = entry.override_reason.system
        event.override_reason_code = entry.override_reason.code
    if shown is not None:
        recommendation = shown.recommendation
        event.patient_key = recommendation.patient_key
        event.recommendation_id = recommendation.recommendation_id
        event.model.CopyFrom(recommendation.model)
        for card in cards_for(recommendation):
            if card["uuid"] == entry.card_uuid:
                event.indicator = _INDICATORS.get(
                    card["indicator"], Indicator.INDICATOR_UNSPECIFIED
                )
    return event


def reason_label(event: Feedback) -> str:
    """`none` without a reason; else the reason's code when it is a short token (codes of an
    override-reason code system), otherwise `other`: bounded, and never free text."""
    code = event.override_reason_code
    if not code:
        return "none"
    return code if _REASON_LABEL.fullmatch(code) else "other"


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp
