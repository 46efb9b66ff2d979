"""What one notified resource becomes: a clinical event for its patient, or, when cdsflow
cannot use it, a record of why (both go to Kafka: the event topic or its `.dlq` twin)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.listener.domain import (
    R5_ONLY,
    UnusableResource,
    build_clinical_event,
    canonical_json,
    patient_reference_of,
)
from cdsflow.listener.intake import NotificationIntake


@dataclass(frozen=True)
class EventDelivery:
    """What one notification event becomes: a clinical event, or a record of why not."""

    event: ClinicalEvent
    unusable: UnusableResource | None = None


def resource_delivery(
    intake: NotificationIntake,
    resource: dict[str, Any],
    kind: NotificationKind.ValueType,
    received_at: datetime,
) -> EventDelivery:
    """The resource as a clinical event (the same `event_id` as a PUT of the same change)."""
    base_url = intake.settings.ehr_base_url
    try:
        patient_reference = patient_reference_of(resource, base_url)
    except UnusableResource as unusable:
        event = build_clinical_event(
            resource,
            canonical_json(resource),
            kind=kind,
            ehr_base_url=base_url,
            patient_reference="",
            patient_key="",
            received_at=received_at,
        )
        return EventDelivery(event, unusable)
    event = build_clinical_event(
        resource,
        canonical_json(resource),
        kind=kind,
        ehr_base_url=base_url,
        patient_reference=patient_reference,
        patient_key=intake.patient_keyer.patient_key(patient_reference),
        received_at=received_at,
    )
    return EventDelivery(event)


def r5_only_delivery(
    intake: NotificationIntake,
    resource: dict[str, Any],
    kind: NotificationKind.ValueType,
    received_at: datetime,
) -> EventDelivery:
    """A resource valid in FHIR R5 only (an R5 notification's): acknowledged and recorded,
    never refused (a refusal would switch the Subscription off), and not published, since
    every reader of the clinical events reads FHIR R4."""
    event = build_clinical_event(
        resource,
        canonical_json(resource),
        kind=kind,
        ehr_base_url=intake.settings.ehr_base_url,
        patient_reference="",
        patient_key="",
        received_at=received_at,
    )
    unusable = UnusableResource(
        R5_ONLY,
        "the resource is valid FHIR R5 but not FHIR R4, which cdsflow reads",
        "focus",
    )
    return EventDelivery(event, unusable)
