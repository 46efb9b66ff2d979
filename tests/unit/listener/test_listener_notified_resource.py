from __future__ import annotations

import json

import pytest

from cdsflow.listener.domain import NotificationRejected, read_notified_resource

from .vital_signs import PATIENT_NAME, as_body, respiratory_rate


def refusal(
    raw: bytes, resource_type: str = "Observation", resource_id: str = "obs-rr-1"
) -> NotificationRejected:
    with pytest.raises(NotificationRejected) as refused:
        read_notified_resource(raw, resource_type, resource_id)
    assert refused.value.status_code == 400
    return refused.value


def test_a_valid_vital_sign_is_returned_as_sent() -> None:
    resource = respiratory_rate()
    assert read_notified_resource(as_body(resource), "Observation", "obs-rr-1") == resource


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not-json"),
        (b"", "not-json"),
        (b"[1, 2]", "not-fhir"),
        (b'{"id": "obs-rr-1"}', "not-fhir"),
    ],
)
def test_what_is_not_a_resource_is_a_structure_problem(raw: bytes, reason: str) -> None:
    rejection = refusal(raw)
    assert (rejection.issue_code, rejection.reason) == ("structure", reason)


def test_resource_type_must_match_the_url() -> None:
    rejection = refusal(as_body(respiratory_rate()), resource_type="Condition")
    assert rejection.issue_code == "invalid"
    assert rejection.expression == ("resourceType",)


def test_id_must_match_the_url() -> None:
    rejection = refusal(as_body(respiratory_rate()), resource_id="obs-other")
    assert rejection.issue_code == "invalid"
    assert rejection.expression == ("id",)


def test_invalid_fhir_names_the_element_never_the_value() -> None:
    resource = respiratory_rate()
    del resource["code"]
    resource["valueQuantity"] = PATIENT_NAME

    rejection = refusal(json.dumps(resource).encode())

    assert (rejection.issue_code, rejection.reason) == ("invalid", "invalid")
    assert "code" in rejection.description
    assert "valueQuantity" in rejection.description
    assert PATIENT_NAME not in rejection.description
