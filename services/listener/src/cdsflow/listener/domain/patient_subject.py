"""Which patient of the configured EHR a clinical resource is about.

Events are keyed by patient so that one patient's events stay in order. A resource that
names no patient (a ward's `Group`, a `Device`) or names a patient that is not this EHR's
(another server, a malformed reference) cannot be placed: `UnusableResource` says why, and
the listener records it instead of charting it on anybody.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdsflow.fhir import local_patient_reference
from cdsflow.listener.domain.unusable_resources import (
    FOREIGN_PATIENT,
    NO_PATIENT,
    UnusableResource,
)

# The elements that point at the patient, in the order they are looked at.
PATIENT_ELEMENTS = ("subject", "patient")


def patient_reference_of(resource: Mapping[str, Any], ehr_base_url: str) -> str:
    """`Patient/<id>` for the patient of the EHR at `ehr_base_url` that the resource is about.

    A Patient is about itself. Any other resource needs a `subject` or `patient` whose
    reference is a Patient; the first such element decides, by `local_patient_reference`.
    """
    if resource.get("resourceType") == "Patient":
        reference = local_patient_reference(f"Patient/{resource.get('id')}", ehr_base_url)
        if reference is None:
            raise UnusableResource(FOREIGN_PATIENT, "the Patient's 'id' is not a FHIR id", "id")
        return reference
    for element in PATIENT_ELEMENTS:
        value = resource.get(element)
        reference = value.get("reference") if isinstance(value, Mapping) else None
        if not isinstance(reference, str) or not _names_a_patient(reference):
            continue
        local = local_patient_reference(reference, ehr_base_url)
        if local is None:
            raise UnusableResource(
                FOREIGN_PATIENT,
                f"'{element}.reference' is not a Patient of the configured EHR "
                "(Patient/<id>, or <EHR base URL>/Patient/<id>)",
                f"{element}.reference",
            )
        return local
    raise UnusableResource(
        NO_PATIENT,
        "the resource has no 'subject' or 'patient' that references a Patient; "
        "only patient-level changes become clinical events",
        *PATIENT_ELEMENTS,
    )


def _names_a_patient(reference: str) -> bool:
    """True when the reference is meant as a Patient's, whether or not it is a valid one."""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return len(parts) >= 2 and parts[-2] == "Patient"
