from __future__ import annotations

import pytest

from cdsflow.telemetry import PatientKeyer

KEY = "unit-test-key-0123456789"


def test_same_patient_same_key() -> None:
    assert PatientKeyer(KEY).patient_key("Patient/123") == PatientKeyer(KEY).patient_key(
        "Patient/123"
    )


def test_key_depends_on_secret_and_patient() -> None:
    one, other = PatientKeyer(KEY), PatientKeyer(KEY + "x")
    assert one.patient_key("Patient/1") != other.patient_key("Patient/1")
    assert one.patient_key("Patient/1") != one.patient_key("Patient/2")


def test_key_never_contains_the_raw_id() -> None:
    key = PatientKeyer(KEY).patient_key("Patient/9876543210")
    assert "9876543210" not in key
    assert len(key) == 32
    int(key, 16)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "Patient",
        "Observation/1",
        "Patient/",
        # only the checked local form: absolute and versioned forms are resolved before keying
        "http://ehr.example/fhir/Patient/123",
        "Patient/123/_history/7",
    ],
)
def test_rejects_what_is_not_a_local_patient_reference(bad: str) -> None:
    with pytest.raises(ValueError, match="Patient reference"):
        PatientKeyer(KEY).patient_key(bad)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        PatientKeyer("short")


def test_a_keyed_digest_is_stable_keyed_and_apart_per_purpose() -> None:
    keyer = PatientKeyer("a-long-enough-test-secret")
    digest = keyer.keyed_digest("hook-token-claim", '["https://ehr.example.org/", "j-1"]')
    assert digest == keyer.keyed_digest("hook-token-claim", '["https://ehr.example.org/", "j-1"]')
    assert len(digest) == 32
    assert "j-1" not in digest
    assert digest != keyer.keyed_digest("another-purpose", '["https://ehr.example.org/", "j-1"]')
    assert digest != PatientKeyer("another-long-test-secret").keyed_digest(
        "hook-token-claim", '["https://ehr.example.org/", "j-1"]'
    )
    with pytest.raises(ValueError, match="purpose"):
        keyer.keyed_digest("", "x")
