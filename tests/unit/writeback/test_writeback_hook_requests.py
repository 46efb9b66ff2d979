"""patient-view request validation, on requests written here (the spec's own examples are in
tests/conformance/test_cds_hooks_examples.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from cdsflow.writeback.domain.hook_requests import (
    InvalidHookRequest,
    parse_hook_request,
    patient_view_request,
)


@pytest.fixture
def spec_request() -> dict[str, Any]:
    """A complete patient-view request, every member the spec defines for it present."""
    return {
        "hookInstance": "2c7e4f1a-9b3d-4e8a-a1f0-6d5c4b3a2918",
        "fhirServer": "https://ehr.example.org/fhir",
        "hook": "patient-view",
        "fhirAuthorization": {
            "access_token": "opaque-token-for-tests",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "cdsflow",
        },
        "context": {
            "userId": "Practitioner/pr-1",
            "patientId": "pat-1",
            "encounterId": "enc-1",
        },
        "prefetch": {"patient": {"resourceType": "Patient", "id": "pat-1"}},
    }


def test_a_complete_patient_view_request_is_accepted(spec_request: dict[str, Any]) -> None:
    request = parse_hook_request(json.dumps(spec_request).encode())

    assert request.patient_id == "pat-1"
    assert request.patient_reference == "Patient/pat-1"
    assert request.hook_instance == "2c7e4f1a-9b3d-4e8a-a1f0-6d5c4b3a2918"
    assert request.user_id == "Practitioner/pr-1"
    assert request.encounter_id == "enc-1"
    assert request.fhir_server == "https://ehr.example.org/fhir"


def test_fhir_server_and_prefetch_are_optional(spec_request: dict[str, Any]) -> None:
    for member in ("fhirServer", "fhirAuthorization", "prefetch"):
        spec_request.pop(member)

    assert patient_view_request(spec_request).fhir_server is None


def test_everything_wrong_is_listed_at_once() -> None:
    with pytest.raises(InvalidHookRequest) as refused:
        patient_view_request({"context": {}})

    assert refused.value.problems == [
        "'hook' is required and must be a string",
        "'hookInstance' is required and must be a string",
        "'context.patientId' is required and must be a string",
    ]


def _without(request: dict[str, Any], *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(request)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target.pop(path[-1])
    return changed


def _with(request: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    changed = copy.deepcopy(request)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: _with(r, "order-sign", "hook"), "answers the 'patient-view' hook only"),
        (lambda r: _without(r, "hookInstance"), "'hookInstance' is required"),
        (lambda r: _with(r, 42, "hookInstance"), "'hookInstance' is required"),
        (lambda r: _without(r, "context"), "'context' is required"),
        (lambda r: _with(r, [], "context"), "'context' is required"),
        (lambda r: _without(r, "context", "patientId"), "'context.patientId' is required"),
        (lambda r: _with(r, 1288992, "context", "patientId"), "'context.patientId' is required"),
        (lambda r: _with(r, "12/34", "context", "patientId"), "not a FHIR resource id"),
        (lambda r: _with(r, 7, "context", "userId"), "'context.userId' must be a string"),
        (lambda r: _with(r, 7, "fhirServer"), "'fhirServer' must be an https URL"),
        (lambda r: _with(r, "javascript:alert(1)", "fhirServer"), "must be an https URL"),
        (lambda r: _with(r, "http://ehr.example.org/fhir", "fhirServer"), "must be an https"),
        (lambda r: _with(r, "http://127.0.0.1:8080/fhir", "fhirServer"), "must be an https"),
        (lambda r: _with(r, "https://u:p@ehr.example.org/", "fhirServer"), "must be an https"),
        (lambda r: _with(r, "https:///fhir", "fhirServer"), "must be an https"),
        (lambda r: _with(r, "..", "context", "patientId"), "not a FHIR resource id"),
        (lambda r: _without(r, "fhirServer"), "'fhirServer' is required when"),
        (lambda r: _with(r, [], "prefetch"), "'prefetch' must be an object"),
    ],
)
def test_a_malformed_request_is_refused_with_its_reason(
    spec_request: dict[str, Any], change: Any, problem: str
) -> None:
    with pytest.raises(InvalidHookRequest) as refused:
        patient_view_request(change(spec_request))

    assert problem in str(refused.value)


@pytest.mark.parametrize("body", [b"", b"{not json", b"\xff\xfe", b"[]", b'"patient-view"'])
def test_a_body_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(InvalidHookRequest):
        parse_hook_request(body)


def test_problems_never_echo_the_patient_id(spec_request: dict[str, Any]) -> None:
    bad_id = "ab/cd-secret"
    with pytest.raises(InvalidHookRequest) as refused:
        patient_view_request(_with(spec_request, bad_id, "context", "patientId"))

    assert bad_id not in str(refused.value)


@pytest.mark.parametrize(
    ("fhir_server", "accepted"),
    [
        ("http://127.0.0.1:8080/fhir", True),
        ("http://localhost/fhir", True),
        ("http://[::1]:8080/fhir", True),
        ("http://ehr.example.org/fhir", False),
        ("javascript:alert(1)", False),
        ("https://ehr.example.org/fhir", True),
    ],
)
def test_loopback_http_only_when_the_embedded_stack_allows_it(
    spec_request: dict[str, Any], fhir_server: str, accepted: bool
) -> None:
    spec_request["fhirServer"] = fhir_server
    raw = json.dumps(spec_request).encode()
    if accepted:
        assert parse_hook_request(raw, allow_loopback_http=True).fhir_server == fhir_server
    else:
        with pytest.raises(InvalidHookRequest):
            parse_hook_request(raw, allow_loopback_http=True)
