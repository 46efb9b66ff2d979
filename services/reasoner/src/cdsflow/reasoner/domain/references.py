"""References inside FHIR resources (plain JSON dicts): whose subject, which resource."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cdsflow.fhir import is_fhir_id

# A FHIR resource type name (`Patient`, `Group`, `Device`, ...).
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def subject_reference(resource: Mapping[str, Any]) -> str | None:
    """The `subject.reference` as written (a Patient resource is its own subject), or None.

    Which patient it names is decided by `cdsflow.fhir.local_patient_reference` only.
    """
    if resource.get("resourceType") == "Patient":
        return f"Patient/{resource.get('id')}"
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, Mapping) else None
    return reference if isinstance(reference, str) else None


def names_another_resource_type(reference: str) -> bool:
    """True for a relative reference to a resource that is no Patient (`Group/ward-3`,
    `Device/d-1`): a resource about it is about no patient at all."""
    resource_type, _, resource_id = reference.partition("/")
    return (
        resource_type != "Patient"
        and bool(_RESOURCE_TYPE.fullmatch(resource_type))
        and is_fhir_id(resource_id)
    )
