"""Which clinical events the reasoner answers, ignores, or refuses."""

from __future__ import annotations

import json

import pytest

from cdsflow.contracts import ClinicalEvent
from cdsflow.reasoner.domain.errors import ForeignPatient, PatientKeyMismatch, UnprocessableEvent
from cdsflow.reasoner.domain.events import (
    IgnoreReason,
    ResourceEvent,
    checked_patient_key,
    confirms_patient,
    decode_clinical_event,
    resource_event,
)

from .reasoner_fhir import EHR_BASE_URL as EHR
from .reasoner_fhir import NOW, PATIENT, READERS, clinical_event, metformin_order, observation


def test_a_vital_sign_event_round_trips_from_protobuf() -> None:
    event = clinical_event(observation("o-1", "9279-1", 24))
    decoded = resource_event(decode_clinical_event(event.SerializeToString()), EHR, READERS)
    assert isinstance(decoded, ResourceEvent)
    assert decoded.patient_reference == PATIENT
    assert decoded.resource["id"] == "o-1"
    assert decoded.occurred_at == NOW


@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff\xff", b"", ClinicalEvent(event_id="e").SerializeToString()]
)
def test_a_body_that_is_no_clinical_event_is_unprocessable(body: bytes) -> None:
    with pytest.raises(UnprocessableEvent):
        decode_clinical_event(body)


def test_other_resources_and_observations_are_ignored_with_their_reason() -> None:
    encounter = {"resourceType": "Encounter", "id": "e-1", "subject": {"reference": PATIENT}}
    weight = observation("o-2", "29463-7", 70, "kg")
    assert resource_event(clinical_event(encounter), EHR, READERS) is IgnoreReason.NOT_READ
    assert resource_event(clinical_event(weight), EHR, READERS) is IgnoreReason.NO_MODEL_INPUT


def test_an_event_feeds_the_adapters_whose_data_it_is() -> None:
    def fed(resource: dict[str, object]) -> list[str]:
        decoded = resource_event(clinical_event(resource), EHR, READERS)
        assert isinstance(decoded, ResourceEvent)
        return sorted(reader.adapter.id for reader in decoded.readers)

    egfr = observation("o-4", "98979-8", 25, "mL/min/{1.73_m2}")
    assert fed(observation("o-1", "8867-4", 70)) == ["deterioration-risk"]
    assert fed(egfr) == ["medication-safety"]
    assert fed(metformin_order("m-1")) == ["medication-safety"]
    assert fed({"resourceType": "Patient", "id": "p-1"}) == ["deterioration-risk"]


def test_a_status_no_feed_takes_is_read_but_not_usable() -> None:
    retracted = observation("o-3", "8867-4", 150, status="entered-in-error")
    decoded = resource_event(clinical_event(retracted), EHR, READERS)
    assert isinstance(decoded, ResourceEvent)
    assert not decoded.usable
    stopped = resource_event(clinical_event(metformin_order("m-1", "stopped")), EHR, READERS)
    assert isinstance(stopped, ResourceEvent)
    assert not stopped.usable


def test_an_observation_is_asked_about_as_of_its_own_time() -> None:
    earlier = NOW.replace(hour=9)
    decoded = resource_event(
        clinical_event(observation("o-1", "8867-4", 70, effective=earlier)), EHR, READERS
    )
    assert isinstance(decoded, ResourceEvent)
    assert decoded.as_of(NOW.replace(hour=23)) == earlier
    order = resource_event(clinical_event(metformin_order("m-1")), EHR, READERS)
    assert isinstance(order, ResourceEvent)
    assert order.as_of(NOW.replace(hour=23)) == NOW  # when the event happened


def test_the_patient_comes_from_the_subject_when_the_event_has_none() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70), patient_reference="")
    decoded = resource_event(event, EHR, READERS)
    assert isinstance(decoded, ResourceEvent)
    assert decoded.patient_reference == PATIENT


@pytest.mark.parametrize("subject", ["Group/g-1", "Device/monitor-7", None])
def test_an_observation_about_no_patient_is_ignored(subject: str | None) -> None:
    resource = observation("o-1", "8867-4", 70, subject=subject or PATIENT)
    if subject is None:
        del resource["subject"]
    event = clinical_event(resource, patient_reference="")
    assert resource_event(event, EHR, READERS) is IgnoreReason.NO_PATIENT


# Subjects that are not Patient/p-1 of http://ehr.example/fhir, whatever they end in.
FOREIGN = [
    "//other.example/fhir/Patient/p-1",
    "http:/other.example/fhir/Patient/p-1",
    "other.example/fhir/Patient/p-1",
    "a/b/c/Patient/p-1",
    f"{EHR}/../other/Patient/p-1",
    f"{EHR}/./Patient/p-1",
    "Patient/..",
    "Patient/.",
    "http://other.example/fhir/Patient/p-1",
    "https://ehr.example/fhir/Patient/p-1",
    "http://ehr.example:8080/fhir/Patient/p-1",
    "http://ehr.example/fhir2/Patient/p-1",
    "http://user@ehr.example/fhir/Patient/p-1",
    f"{EHR}/Patient/p-1?x=1",
    f"{EHR}/Patient/p-1#x",
    f"{EHR}/Patient/p-1/extra",
    f"{EHR}/Group/p-1",
    "Patient/p-1/",
    "Patient/p 1",
    "Patient/" + "x" * 65,
    "Patient/",
    "",
]


@pytest.mark.parametrize("subject", FOREIGN)
def test_an_observation_about_another_servers_patient_is_refused(subject: str) -> None:
    with pytest.raises(ForeignPatient, match="subject is not the event's patient") as refused:
        resource_event(
            clinical_event(observation("o-1", "8867-4", 70, subject=subject)), EHR, READERS
        )
    assert "p-1" not in str(refused.value)
    assert "other" not in str(refused.value)


@pytest.mark.parametrize("subject", [s for s in FOREIGN if s])
def test_without_an_event_patient_a_foreign_subject_is_refused_too(subject: str) -> None:
    event = clinical_event(observation("o-1", "8867-4", 70, subject=subject), patient_reference="")
    with pytest.raises(ForeignPatient, match="not a patient of the configured EHR"):
        resource_event(event, EHR, READERS)


@pytest.mark.parametrize(
    "patient_reference",
    [
        *(r for r in FOREIGN if r),
        f"{EHR}/Patient/p-1",  # the right patient, but not in the local form
        "Patient/p-1/_history/2",
    ],
)
def test_the_events_patient_reference_must_be_the_local_form(patient_reference: str) -> None:
    event = clinical_event(observation("o-1", "8867-4", 70), patient_reference=patient_reference)
    with pytest.raises(ForeignPatient, match="patient_reference is not Patient/<id>"):
        resource_event(event, EHR, READERS)


@pytest.mark.parametrize(
    "subject",
    [
        "Patient/p-1",
        "Patient/p-1/_history/3",
        f"{EHR}/Patient/p-1",
        f"{EHR}/Patient/p-1/_history/3",
        "HTTP://EHR.Example:80/fhir/Patient/p-1",
    ],
)
def test_a_subject_naming_the_local_patient_is_answered(subject: str) -> None:
    event = clinical_event(observation("o-1", "8867-4", 70, subject=subject))
    decoded = resource_event(event, EHR, READERS)
    assert isinstance(decoded, ResourceEvent)
    assert decoded.patient_reference == PATIENT


def test_the_ehr_base_url_is_compared_after_normalisation() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70, subject=f"{EHR}/Patient/p-1"))
    decoded = resource_event(event, "HTTP://ehr.EXAMPLE:80/fhir/", READERS)
    assert isinstance(decoded, ResourceEvent)
    assert decoded.patient_reference == PATIENT


@pytest.mark.parametrize("subject", ["Patient/other", "Group/g-1", None])
def test_a_subject_other_than_the_events_patient_is_refused(subject: str | None) -> None:
    resource = observation("o-1", "8867-4", 70, subject=subject or PATIENT)
    if subject is None:
        del resource["subject"]
    with pytest.raises(ForeignPatient, match="subject"):
        resource_event(clinical_event(resource), EHR, READERS)


def test_an_event_must_carry_its_own_patients_key() -> None:
    assert checked_patient_key("", "a" * 32) == "a" * 32
    assert checked_patient_key("a" * 32, "a" * 32) == "a" * 32
    with pytest.raises(PatientKeyMismatch):
        checked_patient_key("b" * 32, "a" * 32)


def test_only_the_patient_itself_confirms_that_it_exists() -> None:
    assert confirms_patient({"resourceType": "Patient", "id": "p-1"}, PATIENT)
    assert not confirms_patient(None, PATIENT)
    assert not confirms_patient({"resourceType": "Patient", "id": "p-2"}, PATIENT)
    assert not confirms_patient({"resourceType": "OperationOutcome"}, PATIENT)


def test_resource_json_must_be_the_events_resource() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70))
    not_json = ClinicalEvent()
    not_json.CopyFrom(event)
    not_json.resource_json = b"{not json"
    other_id = ClinicalEvent()
    other_id.CopyFrom(event)
    other_id.resource_json = json.dumps(observation("o-2", "8867-4", 70)).encode()
    with pytest.raises(UnprocessableEvent, match="not JSON"):
        resource_event(not_json, EHR, READERS)
    with pytest.raises(UnprocessableEvent, match="id"):
        resource_event(other_id, EHR, READERS)
