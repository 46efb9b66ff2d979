"""Which patient a clinical resource is about.

Events are keyed by patient so that one patient's events stay in order; a resource that
names no patient cannot be placed and is refused (422, `business-rule`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cdsflow.listener.domain.rejections import NotificationRejected
from cdsflow.telemetry import normalize_patient_reference

# The elements that point at the patient, in the order they are looked at.
PATIENT_ELEMENTS = ("subject", "patient")

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def patient_reference_of(resource: Mapping[str, Any], ehr_base_url: str) -> str:
    """`Patient/<id>` for the patient the resource is about.

    A Patient is about itself. Any other resource needs a `subject` or `patient` that
    references a Patient, relatively or absolutely on the EHR at `ehr_base_url`.
    """
    if resource.get("resourceType") == "Patient":
        return _checked(f"Patient/{resource.get('id')}", "id")
    for element in PATIENT_ELEMENTS:
        value = resource.get(element)
        reference = value.get("reference") if isinstance(value, Mapping) else None
        if not isinstance(reference, str):
            continue
        if "://" in reference and not reference.startswith(ehr_base_url.rstrip("/") + "/"):
            raise _no_patient(
                f"'{element}.reference' points at a server other than the configured EHR",
                f"{element}.reference",
            )
        try:
            return _checked(normalize_patient_reference(reference), f"{element}.reference")
        except ValueError:
            continue
    raise _no_patient(
        "the resource has no 'subject' or 'patient' that references a Patient; "
        "only patient-level changes become clinical events",
        *PATIENT_ELEMENTS,
    )


def _checked(patient_reference: str, element: str) -> str:
    if not _FHIR_ID.fullmatch(patient_reference.removeprefix("Patient/")):
        raise _no_patient(f"'{element}' is not a valid Patient reference", element)
    return patient_reference


def _no_patient(diagnostics: str, *expression: str) -> NotificationRejected:
    return NotificationRejected(
        status_code=422,
        issue_code="business-rule",
        reason="no-patient",
        diagnostics=diagnostics,
        expression=expression,
    )
