"""The one rule for which patient a reference names (issue 5, defect 1)."""

from __future__ import annotations

import pytest

from cdsflow.fhir import (
    is_fhir_id,
    is_loopback_host,
    is_patient_reference,
    local_patient_reference,
)

EHR = "https://ehr.example.org/fhir"


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/P",
        "Patient/P/_history/2",
        f"{EHR}/Patient/P",
        f"{EHR}/Patient/P/_history/7",
        "HTTPS://EHR.example.org/fhir/Patient/P",
        "https://ehr.example.org:443/fhir/Patient/P",
    ],
)
def test_the_local_forms_name_the_local_patient(reference: str) -> None:
    assert local_patient_reference(reference, EHR) == "Patient/P"


@pytest.mark.parametrize(
    "reference",
    [
        "//other.example/fhir/Patient/P",
        "http:/other.example/fhir/Patient/P",
        "other.example/fhir/Patient/P",
        "a/b/c/Patient/P",
        f"{EHR}/../other/Patient/P",
        f"{EHR}/./Patient/P",
        f"{EHR}//Patient/P",
        "Patient/..",
        "Patient/.",
        "Patient/",
        "Patient/P/",
        "Patient/P/_history/",
        "Patient/P/extra",
        "Patient/" + "p" * 65,
        "Patient/p p",
        "Patient/%2e%2e",
        "http://ehr.example.org/fhir/Patient/P",  # another scheme is another server
        "https://ehr.example.org:8443/fhir/Patient/P",
        "https://ehr.example.org/fhir-other/Patient/P",
        "https://user@ehr.example.org/fhir/Patient/P",
        f"{EHR}/Patient/P?x=1",
        f"{EHR}/Patient/P#frag",
        "Group/ward-3",
        "#contained",
        "",
    ],
)
def test_anything_else_is_not_this_ehrs_patient(reference: str) -> None:
    assert local_patient_reference(reference, EHR) is None


def test_a_trailing_slash_on_the_base_url_does_not_matter() -> None:
    assert local_patient_reference(f"{EHR}/Patient/P", EHR + "/") == "Patient/P"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("a", True),
        ("A-b.9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        (".", False),
        ("..", False),
        ("", False),
        ("a/b", False),
        ("a_b", False),
        (7, False),
    ],
)
def test_fhir_id_rule(value: object, valid: bool) -> None:
    assert is_fhir_id(value) is valid


def test_events_carry_exactly_the_relative_form() -> None:
    assert is_patient_reference("Patient/P")
    assert not is_patient_reference("Patient/P/_history/1")
    assert not is_patient_reference(f"{EHR}/Patient/P")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("LOCALHOST", True),
        ("ehr.example.org", False),
        ("10.0.0.1", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_hosts(host: str | None, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
