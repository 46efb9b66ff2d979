"""cdsflow contracts: the protobuf event messages (generated into `cdsflow.events.v1`) and
the Kafka topic names."""

from cdsflow.contracts.topics import (
    CLINICAL_EVENTS,
    DLQ_ERROR_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    FEEDBACK,
    RECOMMENDATIONS,
    dead_letter_topic,
)
from cdsflow.events.v1.events_pb2 import (
    Basis,
    BasisInput,
    Card,
    ClinicalEvent,
    EventSource,
    Feedback,
    FeedbackOutcome,
    Indicator,
    Mode,
    ModelRef,
    NotificationKind,
    Recommendation,
    Score,
)

__all__ = [
    "CLINICAL_EVENTS",
    "DLQ_ERROR_HEADER",
    "DLQ_ERROR_TYPE_HEADER",
    "FEEDBACK",
    "RECOMMENDATIONS",
    "Basis",
    "BasisInput",
    "Card",
    "ClinicalEvent",
    "EventSource",
    "Feedback",
    "FeedbackOutcome",
    "Indicator",
    "Mode",
    "ModelRef",
    "NotificationKind",
    "Recommendation",
    "Score",
    "dead_letter_topic",
]
