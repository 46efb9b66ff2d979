"""Which clinical events the reasoner answers, and what it reads out of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import DecodeError

from cdsflow.contracts import ClinicalEvent
from cdsflow.reasoner.domain.errors import UnprocessableEvent
from cdsflow.reasoner.domain.observations import (
    carries_vital_sign,
    is_usable,
    patient_reference_in,
    subject_reference,
)


@dataclass(frozen=True)
class VitalSignEvent:
    """A clinical event about a patient's vital-sign Observation."""

    event: ClinicalEvent
    observation: dict[str, Any]
    patient_reference: str
    occurred_at: datetime | None


def decode_clinical_event(body: bytes) -> ClinicalEvent:
    """Parse the protobuf body; a body that is not a `ClinicalEvent` is unprocessable."""
    event = ClinicalEvent()
    try:
        event.ParseFromString(body)
    except DecodeError:
        raise UnprocessableEvent("the message body is not a ClinicalEvent") from None
    if not event.event_id or not event.resource_type:
        raise UnprocessableEvent("the ClinicalEvent has no event_id or resource_type")
    return event


def vital_sign_event(event: ClinicalEvent) -> VitalSignEvent | None:
    """The event as a vital-sign event, or None when the reasoner has nothing to say about it.

    Ignored: other resource types, Observations without a model input, Observations that may
    not be used (e.g. `entered-in-error`) and Observations about no patient.
    """
    if event.resource_type != "Observation":
        return None
    observation = _resource(event)
    if not carries_vital_sign(observation) or not is_usable(observation):
        return None
    subject = subject_reference(observation)
    if event.patient_reference:
        patient_reference = patient_reference_in(event.patient_reference)
        if patient_reference is None:
            raise UnprocessableEvent("the event's patient_reference is not a Patient reference")
        if subject is not None and subject != patient_reference:
            raise UnprocessableEvent("the Observation's subject is not the event's patient")
    elif subject is not None:
        patient_reference = subject
    else:
        return None
    occurred_at = (
        event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else None
    )
    return VitalSignEvent(
        event=event,
        observation=observation,
        patient_reference=patient_reference,
        occurred_at=occurred_at,
    )


def _resource(event: ClinicalEvent) -> dict[str, Any]:
    try:
        resource = json.loads(event.resource_json)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnprocessableEvent("resource_json is not JSON") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != event.resource_type:
        raise UnprocessableEvent("resource_json is not the event's resource type")
    if resource.get("id") != event.resource_id:
        raise UnprocessableEvent("resource_json's id differs from the event's resource_id")
    return resource
