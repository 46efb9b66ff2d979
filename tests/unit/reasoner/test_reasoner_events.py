"""Which clinical events the reasoner answers, ignores, or refuses."""

from __future__ import annotations

import json

import pytest

from cdsflow.contracts import ClinicalEvent
from cdsflow.reasoner.domain.errors import ForeignPatient, PatientKeyMismatch, UnprocessableEvent
from cdsflow.reasoner.domain.events import (
    IgnoreReason,
    VitalSignEvent,
    checked_patient_key,
    confirms_patient,
    decode_clinical_event,
    vital_sign_event,
)

from .reasoner_fhir import EHR_BASE_URL as EHR
from .reasoner_fhir import NOW, PATIENT, clinical_event, observation


def test_a_vital_sign_event_round_trips_from_protobuf() -> None:
    event = clinical_event(observation("o-1", "9279-1", 24))
    decoded = vital_sign_event(decode_clinical_event(event.SerializeToString()), EHR)
    assert isinstance(decoded, VitalSignEvent)
    assert decoded.patient_reference == PATIENT
    assert decoded.observation["id"] == "o-1"
    assert decoded.occurred_at == NOW


@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff\xff", b"", ClinicalEvent(event_id="e").SerializeToString()]
)
def test_a_body_that_is_no_clinical_event_is_unprocessable(body: bytes) -> None:
    with pytest.raises(UnprocessableEvent):
        decode_clinical_event(body)


def test_other_resources_and_observations_are_ignored_with_their_reason() -> None:
    patient = {"resourceType": "Patient", "id": "p-1"}
    weight = observation("o-2", "29463-7", 70, "kg")
    retracted = observation("o-3", "8867-4", 150, status="entered-in-error")
    assert vital_sign_event(clinical_event(patient), EHR) is IgnoreReason.NOT_OBSERVATION
    assert vital_sign_event(clinical_event(weight), EHR) is IgnoreReason.NO_VITAL_SIGN
    assert vital_sign_event(clinical_event(retracted), EHR) is IgnoreReason.NOT_USABLE_STATUS


def test_the_patient_comes_from_the_subject_when_the_event_has_none() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70), patient_reference="")
    decoded = vital_sign_event(event, EHR)
    assert isinstance(decoded, VitalSignEvent)
    assert decoded.patient_reference == PATIENT


@pytest.mark.parametrize("subject", ["Group/g-1", "Device/monitor-7", None])
def test_an_observation_about_no_patient_is_ignored(subject: str | None) -> None:
    resource = observation("o-1", "8867-4", 70, subject=subject or PATIENT)
    if subject is None:
        del resource["subject"]
    event = clinical_event(resource, patient_reference="")
    assert vital_sign_event(event, EHR) is IgnoreReason.NO_PATIENT


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
        vital_sign_event(clinical_event(observation("o-1", "8867-4", 70, subject=subject)), EHR)
    assert "p-1" not in str(refused.value)
    assert "other" not in str(refused.value)


@pytest.mark.parametrize("subject", [s for s in FOREIGN if s])
def test_without_an_event_patient_a_foreign_subject_is_refused_too(subject: str) -> None:
    event = clinical_event(observation("o-1", "8867-4", 70, subject=subject), patient_reference="")
    with pytest.raises(ForeignPatient, match="not a patient of the configured EHR"):
        vital_sign_event(event, EHR)


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
        vital_sign_event(event, EHR)


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
    decoded = vital_sign_event(event, EHR)
    assert isinstance(decoded, VitalSignEvent)
    assert decoded.patient_reference == PATIENT


def test_the_ehr_base_url_is_compared_after_normalisation() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70, subject=f"{EHR}/Patient/p-1"))
    decoded = vital_sign_event(event, "HTTP://ehr.EXAMPLE:80/fhir/")
    assert isinstance(decoded, VitalSignEvent)
    assert decoded.patient_reference == PATIENT


@pytest.mark.parametrize("subject", ["Patient/other", "Group/g-1", None])
def test_a_subject_other_than_the_events_patient_is_refused(subject: str | None) -> None:
    resource = observation("o-1", "8867-4", 70, subject=subject or PATIENT)
    if subject is None:
        del resource["subject"]
    with pytest.raises(ForeignPatient, match="subject"):
        vital_sign_event(clinical_event(resource), EHR)


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
        vital_sign_event(not_json, EHR)
    with pytest.raises(UnprocessableEvent, match="id"):
        vital_sign_event(other_id, EHR)
