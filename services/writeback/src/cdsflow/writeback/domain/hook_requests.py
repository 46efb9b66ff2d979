"""Validation of a CDS Hooks 2.0 `patient-view` request, before anything is looked up.

Problems name the member that is wrong and never echo its value (an id may identify a
patient). Members this service does not use (`prefetch`, `fhirAuthorization`, extensions)
are checked only for their JSON shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

PATIENT_VIEW = "patient-view"
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class InvalidHookRequest(Exception):
    """The request is not a `patient-view` call this service can answer."""

    problems: list[str]

    def __str__(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True)
class PatientViewRequest:
    hook_instance: str
    patient_id: str
    user_id: str | None = None
    encounter_id: str | None = None
    fhir_server: str | None = None

    @property
    def patient_reference(self) -> str:
        return f"Patient/{self.patient_id}"


def parse_hook_request(raw: bytes) -> PatientViewRequest:
    """Parse and validate the body of `POST /cds-services/{id}`."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidHookRequest(["the body is not JSON"]) from None
    return patient_view_request(body)


def patient_view_request(body: Any) -> PatientViewRequest:
    """Validate a decoded hook request; raise `InvalidHookRequest` listing every problem."""
    if not isinstance(body, dict):
        raise InvalidHookRequest(["the body is not a JSON object"])
    problems: list[str] = []
    hook = body.get("hook")
    if not isinstance(hook, str) or not hook:
        problems.append("'hook' is required and must be a string")
    elif hook != PATIENT_VIEW:
        problems.append(f"this service answers the '{PATIENT_VIEW}' hook only")
    hook_instance = body.get("hookInstance")
    if not isinstance(hook_instance, str) or not hook_instance:
        problems.append("'hookInstance' is required and must be a string")
    fhir_server = body.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server):
        problems.append("'fhirServer' must be a URL string")
    if body.get("fhirAuthorization") is not None:
        if not isinstance(body["fhirAuthorization"], dict):
            problems.append("'fhirAuthorization' must be an object")
        if fhir_server is None:
            problems.append("'fhirServer' is required when 'fhirAuthorization' is present")
    if body.get("prefetch") is not None and not isinstance(body["prefetch"], dict):
        problems.append("'prefetch' must be an object")
    context = body.get("context")
    patient_id: Any = None
    if not isinstance(context, dict):
        problems.append("'context' is required and must be an object")
    else:
        patient_id = context.get("patientId")
        if not isinstance(patient_id, str) or not patient_id:
            problems.append("'context.patientId' is required and must be a string")
        elif not _FHIR_ID.fullmatch(patient_id):
            problems.append("'context.patientId' is not a FHIR resource id")
        for optional in ("userId", "encounterId"):
            if context.get(optional) is not None and not isinstance(context[optional], str):
                problems.append(f"'context.{optional}' must be a string")
    if problems:
        raise InvalidHookRequest(problems)
    assert isinstance(context, dict)
    return PatientViewRequest(
        hook_instance=str(hook_instance),
        patient_id=str(patient_id),
        user_id=context.get("userId"),
        encounter_id=context.get("encounterId"),
        fhir_server=fhir_server,
    )
