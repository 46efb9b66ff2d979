from __future__ import annotations

import json

import pytest

from cdsflow.fhir import InvalidResource, operation_outcome, parse_resource_json, validate_resource


def test_valid_observation_passes() -> None:
    validate_resource(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "9279-1"}]},
            "valueQuantity": {"value": 18, "unit": "/min"},
        }
    )


def test_problems_name_elements_never_values() -> None:
    secret = "Jane-Smith-1950"
    with pytest.raises(InvalidResource) as caught:
        validate_resource(
            {"resourceType": "Observation", "status": "final", "valueQuantity": secret}
        )
    text = str(caught.value)
    assert "code" in text
    assert secret not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"{not json", "not JSON"), (b"[1, 2]", "resourceType"), (b"\xff\xfe", "not UTF-8")],
)
def test_parse_rejects_what_is_not_a_resource(raw: bytes, expected: str) -> None:
    with pytest.raises(InvalidResource, match=expected):
        parse_resource_json(raw)


def test_unknown_resource_type_is_not_quoted_back() -> None:
    with pytest.raises(InvalidResource, match="not a FHIR R4 resource type") as caught:
        validate_resource({"resourceType": "NotAThing"})
    assert "NotAThing" not in str(caught.value)


def test_operation_outcome_shape() -> None:
    outcome = operation_outcome("invalid", "code: missing", expression=["Observation.code"])
    assert json.loads(json.dumps(outcome)) == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "code: missing",
                "expression": ["Observation.code"],
            }
        ],
    }


@pytest.mark.parametrize("name", ["Quantity", "Element", "Resource", "DomainResource", "x"])
def test_a_data_type_or_base_class_is_not_a_resource(name: str) -> None:
    with pytest.raises(InvalidResource) as caught:
        validate_resource({"resourceType": name, "id": "a"})
    assert caught.value.reason == "not-fhir"


R5_ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "2",
    "status": "in-progress",
    # R5: a list of CodeableConcepts; R4: one Coding
    "class": [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}]}
    ],
    "subject": {"reference": "Patient/ABC"},
}


def test_an_r5_only_resource_is_valid_r5_and_not_r4() -> None:
    validate_resource(R5_ENCOUNTER, "R5")
    with pytest.raises(InvalidResource):
        validate_resource(R5_ENCOUNTER)


def test_an_r5_resource_type_unknown_to_r5_is_not_fhir() -> None:
    with pytest.raises(InvalidResource) as refused:
        validate_resource({"resourceType": "NotAType", "id": "x"}, "R5")
    assert refused.value.reason == "not-fhir"
