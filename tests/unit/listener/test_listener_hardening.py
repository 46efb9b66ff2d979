"""Issue 5's defects at the listener's edge: what is refused (4xx, nothing published), what is
acknowledged but recorded as unusable (2xx, never charted), and that no client mistake gets a
5xx or has its values quoted back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .in_process import (
    AUTHORIZED,
    ENDPOINT,
    Listener,
    RecordingPublisher,
    only_issue,
    put_resource,
)
from .vital_signs import CHANNEL_SECRET, EHR_BASE_URL, PATIENT_NAME, as_body, respiratory_rate

KIND = "rest-hook-full-resource"

FOREIGN_SUBJECTS = [
    "//other.example/fhir/Patient/P",
    "http:/other.example/fhir/Patient/P",
    "other.example/fhir/Patient/P",
    "a/b/c/Patient/P",
    f"{EHR_BASE_URL}/../other/Patient/P",
    "https://other.example/fhir/Patient/P",
    "Patient/..",
    "Patient/" + "p" * 65,
]


@pytest.mark.parametrize("subject", FOREIGN_SUBJECTS)
async def test_another_servers_patient_is_recorded_never_charted(
    listener: Listener, publisher: RecordingPublisher, subject: str
) -> None:
    resource = respiratory_rate()
    resource["subject"] = {"reference": subject}

    response = await put_resource(listener, resource)

    assert response.status_code == 200
    assert only_issue(response)["severity"] == "warning"
    assert "other.example" not in response.text
    assert publisher.events == []
    [(recorded, unusable)] = publisher.unusable
    assert unusable.reason == "foreign-patient"
    assert recorded.patient_reference == ""
    assert listener.unusable_count("foreign-patient") == 1


@pytest.mark.parametrize(
    "subject", ["Patient/P", "Patient/P/_history/4", f"{EHR_BASE_URL}/Patient/P"]
)
async def test_the_local_patient_in_each_accepted_form_is_charted(
    listener: Listener, publisher: RecordingPublisher, subject: str
) -> None:
    resource = respiratory_rate()
    resource["subject"] = {"reference": subject}

    assert (await put_resource(listener, resource)).status_code == 200

    [event] = publisher.events
    assert event.patient_reference == "Patient/P"


async def put_raw(listener: Listener, body: bytes, headers: dict[str, str] = AUTHORIZED) -> Any:
    async with listener.client() as client:
        return await client.put(f"{ENDPOINT}/Observation/obs-rr-1", content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"a":' * 995 + b"1" + b"}" * 995, "too-deep"),
        (b"[" * 100_000, "too-deep"),
        (b'{"resourceType": "Observation", "x": ' + b"9" * 4301 + b"}", "number-out-of-range"),
        (b'{"resourceType": "Observation", "x": 1e999}', "number-out-of-range"),
        (b'{"resourceType": "Observation", "x": NaN}', "not-json"),
        ('{"resourceType": "Observation"}'.encode("utf-16"), "not-utf8"),
    ],
)
async def test_json_that_would_crash_a_parser_is_a_400(
    pseudonym_key: str, body: bytes, reason: str
) -> None:
    publisher = RecordingPublisher()
    listener = Listener(publisher, pseudonym_key, limit_bytes=1024 * 1024)

    response = await put_raw(listener, body)

    assert response.status_code == 400
    assert only_issue(response)["code"] == "structure"
    assert publisher.events == publisher.unusable == []
    assert listener.count(KIND, reason) == 1


@pytest.mark.parametrize(
    ("change", "element"),
    [
        ({"valueQuantity": {"value": "22", "unit": "/min"}}, "valueQuantity.value"),
        ({"valueQuantity": {"value": None, "unit": "/min"}}, "valueQuantity.value"),
        ({"status": None}, "status"),
    ],
)
async def test_fhir_json_rules_the_models_let_through_are_enforced(
    listener: Listener, publisher: RecordingPublisher, change: dict[str, Any], element: str
) -> None:
    resource = {**respiratory_rate(), **change}

    response = await put_resource(listener, resource)

    assert response.status_code == 400
    assert element in only_issue(response)["diagnostics"]
    assert publisher.events == []


async def test_a_65_character_id_is_not_a_fhir_id(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = respiratory_rate(resource_id="o" * 65)

    response = await put_resource(listener, resource)

    assert response.status_code == 400
    assert "o" * 65 not in response.text
    assert publisher.events == []


async def test_unknown_names_are_not_quoted_back(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    resource = {**respiratory_rate(), PATIENT_NAME: "x"}
    response = await put_resource(listener, resource)
    assert response.status_code == 400
    assert PATIENT_NAME not in response.text

    async with listener.client() as client:
        response = await client.put(
            f"{ENDPOINT}/{PATIENT_NAME}/obs-rr-1",
            content=json.dumps({"resourceType": PATIENT_NAME, "id": "obs-rr-1"}).encode(),
            headers=AUTHORIZED,
        )
    assert response.status_code == 400
    assert PATIENT_NAME not in response.text
    assert publisher.events == []


@pytest.mark.parametrize(
    "content_type",
    [";;;", "application/fhir+json;;;", "application/fhir+json; charset=utf-16", "text/json"],
)
async def test_malformed_or_non_utf8_media_types_are_415(
    listener: Listener, publisher: RecordingPublisher, content_type: str
) -> None:
    headers = {**AUTHORIZED, "Content-Type": content_type}
    response = await put_resource(listener, respiratory_rate(), headers)
    assert response.status_code == 415
    assert publisher.events == []


async def test_a_duplicate_authorization_header_is_refused(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    async with listener.client() as client:
        response = await client.put(
            f"{ENDPOINT}/Observation/obs-rr-1",
            content=as_body(respiratory_rate()),
            headers=[
                ("Authorization", f"Bearer {CHANNEL_SECRET}"),
                ("Authorization", f"Bearer {CHANNEL_SECRET}"),
                ("Content-Type", "application/fhir+json"),
            ],
        )
    assert response.status_code == 400
    assert CHANNEL_SECRET not in response.text
    assert publisher.events == []
    assert listener.count(KIND, "duplicate-header") == 1


async def test_an_unexpected_failure_is_counted_and_answered_without_a_trace_back(
    listener: Listener, publisher: RecordingPublisher
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError(PATIENT_NAME)

    publisher.publish = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError):
        # without the app's error middleware the failure surfaces; it was counted first
        await put_resource(listener, respiratory_rate())
    assert listener.count(KIND, "error") == 1
