"""The listener against the examples of the conformance pack (FHIR R4 core, the Subscriptions
Backport IG for R4 and R4B, FHIR R5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdsflow.listener.domain import UnusableResource, patient_reference_of

pytestmark = pytest.mark.conformance

SUBSCRIPTIONS = Path("subscriptions")
UNIT_TEST_EHR = "http://ehr.test/fhir"


def test_the_backport_examples_encounter_is_a_patient_of_its_own_ehr_only(
    conformance_dir: Path,
) -> None:
    example = SUBSCRIPTIONS / "backport-ig/r4/Bundle-r4-notification-full-resource.json"
    bundle = json.loads((conformance_dir / example).read_text())
    encounter = bundle["entry"][1]["resource"]
    assert encounter["subject"]["reference"].startswith("https://example.org/fhir/Patient/")

    assert patient_reference_of(encounter, "https://example.org/fhir/") == (
        "Patient/1599eb66-431a-447c-a3de-6897fe9ae9a1"
    )
    with pytest.raises(UnusableResource) as refused:
        patient_reference_of(encounter, UNIT_TEST_EHR)
    assert refused.value.reason == "foreign-patient"
    assert refused.value.expression == ("subject.reference",)
    assert "example.org" not in refused.value.description
