from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.listener.domain import build_clinical_event, clinical_event_id
from cdsflow.telemetry import PatientKeyer

from .vital_signs import EHR_BASE_URL, as_body, respiratory_rate

RECEIVED_AT = datetime(2025, 1, 2, 3, 5, 0, tzinfo=UTC)
FULL_RESOURCE = NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE


def event_for(
    resource: dict[str, Any], body: bytes | None = None, ehr_base_url: str = EHR_BASE_URL
) -> ClinicalEvent:
    return build_clinical_event(
        resource,
        as_body(resource) if body is None else body,
        kind=FULL_RESOURCE,
        ehr_base_url=ehr_base_url,
        patient_reference="Patient/pat-1",
        patient_key="0123456789abcdef0123456789abcdef",
        received_at=RECEIVED_AT,
    )


def test_event_carries_the_resource_and_where_it_came_from(pseudonym_key: str) -> None:
    resource = respiratory_rate()
    body = as_body(resource)
    patient_key = PatientKeyer(pseudonym_key).patient_key("Patient/pat-1")

    event = build_clinical_event(
        resource,
        body,
        kind=FULL_RESOURCE,
        ehr_base_url=EHR_BASE_URL + "/",
        patient_reference="Patient/pat-1",
        patient_key=patient_key,
        received_at=RECEIVED_AT,
    )

    assert len(event.event_id) == 64
    int(event.event_id, 16)  # hex
    assert event.resource_type == "Observation"
    assert event.resource_id == "obs-rr-1"
    assert event.resource_version == "3"
    assert event.resource_json == body
    assert event.patient_reference == "Patient/pat-1"
    assert event.patient_key == patient_key
    assert event.source.ehr_base_url == EHR_BASE_URL
    assert event.source.kind == FULL_RESOURCE
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == datetime(
        2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC
    )
    assert event.received_at.ToDatetime(tzinfo=UTC) == RECEIVED_AT
    # the event survives the wire
    assert ClinicalEvent.FromString(event.SerializeToString()) == event


def test_occurred_at_is_the_receive_time_without_last_updated() -> None:
    event = event_for(respiratory_rate(last_updated=None))
    assert event.occurred_at.ToDatetime(tzinfo=UTC) == RECEIVED_AT
    assert event.resource_version == "3"


def test_the_same_version_delivered_twice_has_the_same_id() -> None:
    resource = respiratory_rate()
    reformatted = json.dumps(resource, indent=2, sort_keys=True).encode()
    assert event_for(resource).event_id == event_for(resource, body=reformatted).event_id


def test_without_version_the_id_follows_the_content_not_its_formatting() -> None:
    resource = respiratory_rate(version_id=None)
    reordered = dict(reversed(list(resource.items())))
    changed = respiratory_rate(version_id=None)
    changed["valueQuantity"]["value"] = 30

    assert event_for(resource).resource_version == ""
    assert event_for(resource).event_id == event_for(reordered).event_id
    assert event_for(resource).event_id != event_for(changed).event_id


@pytest.mark.parametrize(
    ("ehr_base_url", "resource_type", "resource_id", "version_id"),
    [
        ("http://other-ehr.test/fhir", "Observation", "obs-rr-1", "3"),
        (EHR_BASE_URL, "Condition", "obs-rr-1", "3"),
        (EHR_BASE_URL, "Observation", "obs-rr-2", "3"),
        (EHR_BASE_URL, "Observation", "obs-rr-1", "4"),
    ],
)
def test_every_part_of_the_change_changes_the_id(
    ehr_base_url: str, resource_type: str, resource_id: str, version_id: str
) -> None:
    resource = respiratory_rate()
    reference = clinical_event_id(EHR_BASE_URL, "Observation", "obs-rr-1", "3", resource)
    other = clinical_event_id(ehr_base_url, resource_type, resource_id, version_id, resource)
    assert other != reference


def test_trailing_slash_on_the_base_url_does_not_change_the_id() -> None:
    resource = respiratory_rate()
    assert (
        event_for(resource, ehr_base_url=EHR_BASE_URL + "/").event_id
        == event_for(resource).event_id
    )
