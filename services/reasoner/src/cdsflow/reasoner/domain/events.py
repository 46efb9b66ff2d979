"""Which clinical events the reasoner answers, for which model adapters, about whom.

An event feeds an adapter when its resource is one the adapter's data feeds read: an
Observation with one of its codes (on the Observation or a component), a MedicationRequest
for one of its medications, or the Patient (for an adapter that reads the age).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.protobuf.message import DecodeError

from cdsflow.contracts import ClinicalEvent
from cdsflow.fhir import local_patient_reference
from cdsflow.models import ResourceReader
from cdsflow.models.fhir_elements import ChartedResource, charted_resource
from cdsflow.models.resource_readings import READ_RESOURCE_TYPES
from cdsflow.reasoner.domain.errors import ForeignPatient, PatientKeyMismatch, UnprocessableEvent
from cdsflow.reasoner.domain.references import names_another_resource_type, subject_reference


class IgnoreReason(StrEnum):
    """Why an event has nothing for the models; the value of the `reason` metric label."""

    # a resource type that no adapter reads (Encounter, Condition, ...)
    NOT_READ = "resource-not-read"
    # a resource of a type that adapters read, with no code that any of them reads
    NO_MODEL_INPUT = "no-model-input"
    # a status that no feed takes (an Observation `entered-in-error`, ...)
    NOT_USABLE_STATUS = "not-usable-status"
    NO_PATIENT = "no-patient"


@dataclass(frozen=True)
class ResourceEvent:
    """A clinical event about a resource that some adapters read, of a patient of the
    configured EHR."""

    event: ClinicalEvent
    resource: dict[str, Any]
    # the resource's elements, parsed once for every adapter that reads it
    charted: ChartedResource
    # `Patient/<id>` on the configured EHR, checked by `cdsflow.fhir.local_patient_reference`
    patient_reference: str
    occurred_at: datetime | None
    # the adapters whose data feeds read the resource
    readers: tuple[ResourceReader, ...]

    @property
    def usable(self) -> bool:
        """False when no feed that reads the resource takes its status."""
        return any(reader.usable_status(self.charted) for reader in self.readers)

    def as_of(self, now: datetime) -> datetime:
        """The time the models are asked about: an Observation's own time (so a late one is
        scored as of itself), else when the event happened, else now."""
        if self.charted.resource_type == "Observation" and self.charted.observed_at is not None:
            return self.charted.observed_at
        return self.occurred_at or now


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


def resource_event(
    event: ClinicalEvent, ehr_base_url: str, readers: Sequence[ResourceReader]
) -> ResourceEvent | IgnoreReason:
    """The event with the adapters it feeds, or why the models have nothing to say about it.

    A resource about a patient that is not the configured EHR's raises `ForeignPatient`.
    """
    if event.resource_type not in READ_RESOURCE_TYPES:
        return IgnoreReason.NOT_READ
    resource = _resource(event)
    charted = charted_resource(resource)
    fed = tuple(reader for reader in readers if reader.reads(charted))
    if not fed:
        return IgnoreReason.NO_MODEL_INPUT
    patient_reference = _patient_of(event, resource, ehr_base_url)
    if isinstance(patient_reference, IgnoreReason):
        return patient_reference
    occurred_at = (
        event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else None
    )
    return ResourceEvent(event, resource, charted, patient_reference, occurred_at, fed)


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
    event: ClinicalEvent, resource: dict[str, Any], ehr_base_url: str
) -> str | IgnoreReason:
    """`Patient/<id>` of the configured EHR that the event and its resource are about.

    The event's `patient_reference` must itself be that local form, and the resource's
    subject must name the same patient. An event without one (from an older producer) takes
    the subject's patient; a resource about a Group or Device is about no patient.
    """
    subject = subject_reference(resource)
    subject_patient = local_patient_reference(subject, ehr_base_url)
    if event.patient_reference:
        if local_patient_reference(event.patient_reference, ehr_base_url) != (
            event.patient_reference
        ):
            raise ForeignPatient(
                "the event's patient_reference is not Patient/<id> of the configured EHR"
            )
        if subject_patient != event.patient_reference:
            raise ForeignPatient("the resource's subject is not the event's patient")
        return event.patient_reference
    if subject is None or names_another_resource_type(subject):
        return IgnoreReason.NO_PATIENT
    if subject_patient is None:
        raise ForeignPatient("the resource's subject is not a patient of the configured EHR")
    return subject_patient


def _resource(event: ClinicalEvent) -> dict[str, Any]:
    try:
        resource = json.loads(event.resource_json)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnprocessableEvent("resource_json is not JSON") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != event.resource_type:
        raise UnprocessableEvent("resource_json is not the event's resource type")
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not resource_id or resource_id != event.resource_id:
        raise UnprocessableEvent("resource_json's id differs from the event's resource_id")
    return resource
