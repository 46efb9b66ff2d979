"""The notification endpoints' answers, through the ASGI app in-process (no broker).

The recording publisher stands in for Kafka so that every refusal path can be driven; the
publish path against a real broker is in tests/integration/test_listener.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from .in_process import (
    AUTHORIZED,
    ENDPOINT,
    LIMIT_BYTES,
    Listener,
    RecordingPublisher,
    only_issue,
    put_resource,
)
from .vital_signs import CHANNEL_SECRET, EHR_BASE_URL, PATIENT_NAME, as_body, respiratory_rate


async def test_a_vital_sign_is_published_then_acknowledged(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate(patient_id="pat-42")

    response = await put_resource(listener, resource)

    assert response.status_code == 200
    assert only_issue(response)["severity"] == "information"
    [event] = publisher.events
    assert event.resource_json == as_body(resource)
    assert event.patient_reference == "Patient/pat-42"
    assert event.patient_key == listener.keyer.patient_key("Patient/pat-42")
    assert event.source.ehr_base_url == EHR_BASE_URL
    assert event.event_id in only_issue(response)["diagnostics"]
    assert listener.count("rest-hook-full-resource", "published") == 1


async def test_a_redelivery_is_acknowledged_and_publishes_nothing_more(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate()
    first = await put_resource(listener, resource)
    again = await put_resource(listener, resource)

    assert first.status_code == again.status_code == 200
    [event] = publisher.events
    assert f"{event.event_id} already published" in only_issue(again)["diagnostics"]
    assert listener.count("rest-hook-full-resource", "published") == 1
    assert listener.count("rest-hook-full-resource", "already-published") == 1
    assert listener.duplicate_count() == 1


async def test_a_new_version_of_the_resource_is_a_new_event(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate()
    await put_resource(listener, resource)
    resource["meta"] = {**resource.get("meta", {}), "versionId": "2"}
    await put_resource(listener, resource)

    first, second = publisher.events
    assert first.event_id != second.event_id


async def test_the_same_event_arriving_twice_at_once_is_published_once(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    publisher.ack_delay_s = 0.05
    resource = respiratory_rate()

    answers = await asyncio.gather(*(put_resource(listener, resource) for _ in range(3)))

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert len(publisher.events) == 1
    assert listener.count("rest-hook-full-resource", "already-published") == 2


async def test_before_the_topic_is_read_back_the_ehr_is_told_to_retry(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    listener.published.caught_up = False

    response = await put_resource(listener, respiratory_rate())

    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert publisher.events == []


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-secret-wrong-secret", f"Basic {CHANNEL_SECRET}"]
)
async def test_without_the_channel_secret_nothing_is_published(
    listener: Listener, publisher: RecordingPublisher, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/fhir+json"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = await put_resource(listener, respiratory_rate(), headers)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert only_issue(response)["code"] == "security"
    assert publisher.events == []
    assert listener.count("rest-hook-full-resource", "unauthorized") == 1


async def test_a_declared_oversize_body_is_refused(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate()
    resource["note"] = [{"text": "x" * LIMIT_BYTES}]

    response = await put_resource(listener, resource)

    assert response.status_code == 413
    assert only_issue(response)["code"] == "too-costly"
    assert publisher.events == []


async def test_an_oversize_body_without_content_length_is_refused_while_reading(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(LIMIT_BYTES // 512 + 2):
            yield b" " * 512

    async with listener.client() as client:
        response = await client.put(
            f"{ENDPOINT}/Observation/obs-rr-1", content=chunks(), headers=AUTHORIZED
        )

    assert response.request.headers.get("content-length") is None
    assert response.status_code == 413
    assert only_issue(response)["code"] == "too-costly"
    assert publisher.events == []
    assert listener.count("rest-hook-full-resource", "too-large") == 1


async def test_invalid_fhir_is_a_client_error_that_never_echoes_values(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate()
    resource["valueQuantity"] = PATIENT_NAME

    response = await put_resource(listener, resource)

    assert response.status_code == 400
    issue = only_issue(response)
    assert issue["code"] == "invalid"
    assert "valueQuantity" in issue["diagnostics"]
    assert PATIENT_NAME not in response.text
    assert publisher.events == []


async def test_a_body_that_is_not_json_is_a_structure_error(listener: Listener) -> None:
    async with listener.client() as client:
        response = await client.put(
            f"{ENDPOINT}/Observation/obs-rr-1",
            content=b"{" + PATIENT_NAME.encode(),
            headers=AUTHORIZED,
        )
    assert response.status_code == 400
    assert only_issue(response)["code"] == "structure"
    assert PATIENT_NAME not in response.text


async def test_a_resource_about_no_patient_is_acknowledged_and_recorded_not_charted(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    """A ward's reading (subject a Group) must not put the EHR's Subscription in error."""
    resource = respiratory_rate()
    resource["subject"] = {"reference": "Group/ward-3"}

    response = await put_resource(listener, resource)

    assert response.status_code == 200
    issue = only_issue(response)
    assert (issue["severity"], issue["code"]) == ("warning", "business-rule")
    assert "ward-3" not in response.text
    assert publisher.events == []
    [(recorded, unusable)] = publisher.unusable
    assert (unusable.reason, unusable.error_type) == ("no-patient", "NoPatient")
    assert recorded.patient_key == recorded.patient_reference == ""
    assert recorded.resource_json == as_body(resource)
    assert listener.count("rest-hook-full-resource", "recorded-unusable") == 1
    assert listener.unusable_count("no-patient") == 1


async def test_an_unusable_resource_waits_for_the_broker_like_any_other(
    pseudonym_key: str,
) -> None:
    listener = Listener(RecordingPublisher(unavailable=True), pseudonym_key)
    resource = respiratory_rate()
    resource["subject"] = {"reference": "Group/ward-3"}

    response = await put_resource(listener, resource)

    assert response.status_code == 503
    assert listener.unusable_count("no-patient") == 0


async def test_xml_is_not_supported(listener: Listener) -> None:
    headers = {**AUTHORIZED, "Content-Type": "application/fhir+xml"}
    response = await put_resource(listener, respiratory_rate(), headers)
    assert response.status_code == 415
    assert only_issue(response)["code"] == "not-supported"


async def test_an_unavailable_broker_asks_the_ehr_to_retry(pseudonym_key: str) -> None:
    listener = Listener(RecordingPublisher(unavailable=True), pseudonym_key)

    response = await put_resource(listener, respiratory_rate())

    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert only_issue(response)["code"] == "transient"
    assert listener.count("rest-hook-full-resource", "unavailable") == 1


async def test_an_empty_post_is_a_ping_that_is_counted(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    async with listener.client() as client:
        response = await client.post(ENDPOINT, headers=AUTHORIZED)

    assert response.status_code == 200
    assert only_issue(response)["severity"] == "information"
    assert publisher.events == []
    assert listener.count("rest-hook-ping", "acknowledged") == 1


async def test_a_ping_needs_the_channel_secret(listener: Listener) -> None:
    async with listener.client() as client:
        response = await client.post(ENDPOINT)
    assert response.status_code == 401
    assert listener.count("rest-hook-ping", "acknowledged") == 0
