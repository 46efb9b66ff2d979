"""Which focus of an id-only notification the listener may read from the EHR."""

from __future__ import annotations

import pytest

from cdsflow.listener.domain import FocusOnEhr, focus_on_ehr

from .vital_signs import EHR_BASE_URL


@pytest.mark.parametrize(
    "focus",
    [
        "Encounter/enc-1",
        "Encounter/enc-1/_history/3",
        f"{EHR_BASE_URL}/Encounter/enc-1",
        f"{EHR_BASE_URL}/Encounter/enc-1/_history/3",
        "HTTP://EHR.test:80/fhir/Encounter/enc-1",
    ],
)
def test_a_focus_on_the_configured_ehr(focus: str) -> None:
    assert focus_on_ehr(focus, EHR_BASE_URL) == FocusOnEhr("Encounter", "enc-1")


@pytest.mark.parametrize(
    "focus",
    [
        "https://ehr.test/fhir/Encounter/enc-1",  # another scheme is another server
        "http://ehr.test/fhir2/Encounter/enc-1",
        "http://ehr.test/Encounter/enc-1",
        "http://user@ehr.test/fhir/Encounter/enc-1",
        f"{EHR_BASE_URL}/Encounter/enc-1#x",
        f"{EHR_BASE_URL}/a/Encounter/enc-1",
        f"{EHR_BASE_URL}/Encounter/enc-1/_history",
        f"{EHR_BASE_URL}/Encounter/..",
        "Encounter/enc 1",
        "encounter/enc-1",
        "Encounter/enc-1/extra",
        "#contained",
        "urn:uuid:0d6a1c2e-0000-4000-8000-000000000001",
        "",
    ],
)
def test_a_focus_anywhere_else_is_not_read(focus: str) -> None:
    assert focus_on_ehr(focus, EHR_BASE_URL) is None
