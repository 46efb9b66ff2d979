"""Which clinical events the reasoner answers, ignores, or refuses."""

from __future__ import annotations

import json

import pytest

from cdsflow.contracts import ClinicalEvent
from cdsflow.reasoner.domain.errors import UnprocessableEvent
from cdsflow.reasoner.domain.events import decode_clinical_event, vital_sign_event

from .reasoner_fhir import NOW, PATIENT, clinical_event, observation


def test_a_vital_sign_event_round_trips_from_protobuf() -> None:
    event = clinical_event(observation("o-1", "9279-1", 24))
    decoded = vital_sign_event(decode_clinical_event(event.SerializeToString()))
    assert decoded is not None
    assert decoded.patient_reference == PATIENT
    assert decoded.observation["id"] == "o-1"
    assert decoded.occurred_at == NOW


@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff\xff", b"", ClinicalEvent(event_id="e").SerializeToString()]
)
def test_a_body_that_is_no_clinical_event_is_unprocessable(body: bytes) -> None:
    with pytest.raises(UnprocessableEvent):
        decode_clinical_event(body)


def test_other_resources_and_observations_are_ignored() -> None:
    patient = {"resourceType": "Patient", "id": "p-1"}
    weight = observation("o-2", "29463-7", 70, "kg")
    retracted = observation("o-3", "8867-4", 150, status="entered-in-error")
    assert vital_sign_event(clinical_event(patient)) is None
    assert vital_sign_event(clinical_event(weight)) is None
    assert vital_sign_event(clinical_event(retracted)) is None


def test_the_patient_comes_from_the_subject_when_the_event_has_none() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70), patient_reference="")
    decoded = vital_sign_event(event)
    assert decoded is not None
    assert decoded.patient_reference == PATIENT


def test_an_observation_about_no_patient_is_ignored() -> None:
    event = clinical_event(
        observation("o-1", "8867-4", 70, subject="Group/g-1"), patient_reference=""
    )
    assert vital_sign_event(event) is None


def test_a_subject_other_than_the_events_patient_is_unprocessable() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70, subject="Patient/other"))
    with pytest.raises(UnprocessableEvent, match="subject"):
        vital_sign_event(event)


def test_resource_json_must_be_the_events_resource() -> None:
    event = clinical_event(observation("o-1", "8867-4", 70))
    not_json = ClinicalEvent()
    not_json.CopyFrom(event)
    not_json.resource_json = b"{not json"
    other_id = ClinicalEvent()
    other_id.CopyFrom(event)
    other_id.resource_json = json.dumps(observation("o-2", "8867-4", 70)).encode()
    with pytest.raises(UnprocessableEvent, match="not JSON"):
        vital_sign_event(not_json)
    with pytest.raises(UnprocessableEvent, match="id"):
        vital_sign_event(other_id)
