"""Kafka topic names. Each topic has a `.dlq` twin for messages that cannot be processed."""

from __future__ import annotations

CLINICAL_EVENTS = "cdsflow.clinical-events.v1"
RECOMMENDATIONS = "cdsflow.recommendations.v1"
FEEDBACK = "cdsflow.feedback.v1"
# each accepted CDS Hooks JWT's claim, read back by every writeback replica (replay check)
HOOK_TOKEN_CLAIMS = "cdsflow.hook-token-claims.v1"  # noqa: S105 (a topic name, not a secret)

# Headers on a dead-lettered message.
DLQ_ERROR_TYPE_HEADER = "cdsflow-error-type"
DLQ_ERROR_HEADER = "cdsflow-error"


def dead_letter_topic(topic: str) -> str:
    """`cdsflow.clinical-events.v1` -> `cdsflow.clinical-events.v1.dlq`."""
    return f"{topic}.dlq"
