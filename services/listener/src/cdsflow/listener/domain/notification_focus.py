"""Which resource on the configured EHR a notification's `focus` names, if any.

An id-only notification names the changed resource; the listener reads it from the EHR. It
reads only from `CDSFLOW_EHR_BASE_URL`: a focus that is `Type/id` (optionally
`/_history/v`), or exactly `{EHR base URL}/Type/id` after the same normalisation as the patient
rule (`cdsflow.fhir.normalised_base_url`). Anything else is another server's, or not a
resource URL at all, and is never fetched.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdsflow.fhir import normalised_base_url
from cdsflow.listener.domain.subscription_notifications import reference_path


@dataclass(frozen=True)
class FocusOnEhr:
    resource_type: str
    resource_id: str


def focus_on_ehr(focus: str, ehr_base_url: str) -> FocusOnEhr | None:
    """The focus as a type and id on the EHR at `ehr_base_url`, or None when it is not one."""
    if "://" not in focus:
        relative = focus
    else:
        base = normalised_base_url(ehr_base_url)
        absolute = normalised_base_url(focus)
        if base is None or absolute is None or not absolute.startswith(base + "/"):
            return None
        relative = absolute.removeprefix(base + "/")
    parts = relative.split("/")
    if len(parts) not in (2, 4) or (len(parts) == 4 and parts[2] != "_history"):
        return None
    path = reference_path(relative)
    if path is None or not relative.startswith(path):
        return None
    resource_type, resource_id = path.split("/")
    return FocusOnEhr(resource_type, resource_id)
