from __future__ import annotations

from typing import Any

import pytest

from cdsflow.listener.domain import UnusableResource, patient_reference_of

from .vital_signs import EHR_BASE_URL, respiratory_rate


def test_observation_subject_names_the_patient() -> None:
    assert patient_reference_of(respiratory_rate(patient_id="p-7"), EHR_BASE_URL) == "Patient/p-7"


def test_patient_element_names_the_patient() -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "patient": {"reference": "Patient/p-8/_history/2"},
    }
    assert patient_reference_of(allergy, EHR_BASE_URL) == "Patient/p-8"


def test_a_patient_is_about_itself() -> None:
    assert patient_reference_of({"resourceType": "Patient", "id": "p-9"}, EHR_BASE_URL) == (
        "Patient/p-9"
    )


def test_absolute_reference_on_the_configured_ehr() -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "subject": {"reference": "https://example.org/fhir/Patient/p-10"},
    }

    assert patient_reference_of(encounter, "https://example.org/fhir/") == "Patient/p-10"
    with pytest.raises(UnusableResource) as refused:
        patient_reference_of(encounter, EHR_BASE_URL)
    assert refused.value.reason == "foreign-patient"
    assert refused.value.expression == ("subject.reference",)
    assert "example.org" not in refused.value.description


@pytest.mark.parametrize(
    "subject",
    [
        None,
        {"reference": "Group/ward-3"},
        {"reference": "#contained-patient"},
        {"identifier": {"system": "urn:mrn", "value": "12345"}},
    ],
)
def test_resources_without_a_patient_subject_are_unusable(subject: dict[str, Any] | None) -> None:
    resource = respiratory_rate()
    if subject is None:
        del resource["subject"]
    else:
        resource["subject"] = subject

    with pytest.raises(UnusableResource) as unusable:
        patient_reference_of(resource, EHR_BASE_URL)

    assert unusable.value.reason == "no-patient"
    assert "12345" not in unusable.value.description
    assert "ward-3" not in unusable.value.description


@pytest.mark.parametrize(
    "reference",
    ["Patient/", "Patient/..", "//other.example/fhir/Patient/P", "a/b/c/Patient/P/_history/1"],
)
def test_a_patient_reference_that_is_not_this_ehrs_is_a_foreign_patient(reference: str) -> None:
    resource = respiratory_rate()
    resource["subject"] = {"reference": reference}

    with pytest.raises(UnusableResource) as unusable:
        patient_reference_of(resource, EHR_BASE_URL)

    assert unusable.value.reason == "foreign-patient"
    assert "other.example" not in unusable.value.description
