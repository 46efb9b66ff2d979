"""Which clinical events the reasoner answers, and what it reads out of them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.protobuf.message import DecodeError

from cdsflow.contracts import ClinicalEvent
from cdsflow.fhir import local_patient_reference
from cdsflow.reasoner.domain.errors import ForeignPatient, PatientKeyMismatch, UnprocessableEvent
from cdsflow.reasoner.domain.observations import (
    carries_vital_sign,
    is_usable,
    names_another_resource_type,
    subject_reference,
)


class IgnoreReason(StrEnum):
    """Why an event has nothing for the model; the value of the `reason` metric label."""

    NOT_OBSERVATION = "not-observation"
    NO_VITAL_SIGN = "no-vital-sign"
    NOT_USABLE_STATUS = "not-usable-status"
    NO_PATIENT = "no-patient"


@dataclass(frozen=True)
class VitalSignEvent:
    """A clinical event about a vital-sign Observation of a patient of the configured EHR."""

    event: ClinicalEvent
    observation: dict[str, Any]
    # `Patient/<id>` on the configured EHR, checked by `cdsflow.fhir.local_patient_reference`
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


def vital_sign_event(event: ClinicalEvent, ehr_base_url: str) -> VitalSignEvent | IgnoreReason:
    """The event as a vital-sign event, or why the reasoner has nothing to say about it.

    Ignored: other resource types, Observations without a model input, Observations that may
    not be used (e.g. `entered-in-error`) and Observations about no patient. An Observation
    about a patient that is not the configured EHR's raises `ForeignPatient`.
    """
    if event.resource_type != "Observation":
        return IgnoreReason.NOT_OBSERVATION
    observation = _resource(event)
    if not carries_vital_sign(observation):
        return IgnoreReason.NO_VITAL_SIGN
    if not is_usable(observation):
        return IgnoreReason.NOT_USABLE_STATUS
    patient_reference = _patient_of(event, observation, ehr_base_url)
    if isinstance(patient_reference, IgnoreReason):
        return patient_reference
    occurred_at = (
        event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else None
    )
    return VitalSignEvent(
        event=event,
        observation=observation,
        patient_reference=patient_reference,
        occurred_at=occurred_at,
    )


def checked_patient_key(event_patient_key: str, patient_key: str) -> str:
    """The key of the event's patient; an event that carries another patient's key is refused,
    since the recommendation would be looked up (and shown) under that key."""
    if event_patient_key and event_patient_key != patient_key:
        raise PatientKeyMismatch("the event's patient_key is not the key of its patient")
    return patient_key


def confirms_patient(resource: dict[str, Any] | None, patient_reference: str) -> bool:
    """True when the EHR's answer to a read of `patient_reference` is that Patient."""
    return (
        resource is not None
        and resource.get("resourceType") == "Patient"
        and f"Patient/{resource.get('id')}" == patient_reference
    )


def _patient_of(
    event: ClinicalEvent, observation: dict[str, Any], ehr_base_url: str
) -> str | IgnoreReason:
    """`Patient/<id>` of the configured EHR that the event and its Observation are about.

    The event's `patient_reference` must itself be that local form, and the Observation's
    subject must name the same patient. An event without one (from an older producer) takes
    the subject's patient; an Observation about a Group or Device is about no patient.
    """
    subject = subject_reference(observation)
    subject_patient = local_patient_reference(subject, ehr_base_url)
    if event.patient_reference:
        if local_patient_reference(event.patient_reference, ehr_base_url) != (
            event.patient_reference
        ):
            raise ForeignPatient(
                "the event's patient_reference is not Patient/<id> of the configured EHR"
            )
        if subject_patient != event.patient_reference:
            raise ForeignPatient("the Observation's subject is not the event's patient")
        return event.patient_reference
    if subject is None or names_another_resource_type(subject):
        return IgnoreReason.NO_PATIENT
    if subject_patient is None:
        raise ForeignPatient("the Observation's subject is not a patient of the configured EHR")
    return subject_patient


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
