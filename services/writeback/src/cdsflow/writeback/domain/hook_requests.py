"""Validation of a CDS Hooks 2.0 `patient-view` request, before anything is looked up.

Problems name the member that is wrong and never echo its value (an id may identify a
patient). Members this service does not use (`prefetch`, `fhirAuthorization`, extensions)
are checked only for their JSON shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdsflow.fhir import MalformedJson, is_fhir_id, is_loopback_host, parse_json_document

PATIENT_VIEW = "patient-view"


@dataclass(frozen=True)
class InvalidHookRequest(Exception):
    """The request is not a `patient-view` call this service can answer.

    `reason` is a fixed label for metrics: `not-json`, `too-deep`, ... or `invalid`.
    """

    problems: list[str]
    reason: str = "invalid"

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


def parse_hook_request(raw: bytes, *, allow_loopback_http: bool = False) -> PatientViewRequest:
    """Parse and validate the body of `POST /cds-services/{id}`."""
    try:
        body = parse_json_document(raw)
    except MalformedJson as exc:
        raise InvalidHookRequest([exc.description], exc.reason) from None
    return patient_view_request(body, allow_loopback_http=allow_loopback_http)


def patient_view_request(body: Any, *, allow_loopback_http: bool = False) -> PatientViewRequest:
    """Validate a decoded hook request; raise `InvalidHookRequest` listing every problem.

    `fhirServer` must be an https URL; plain http only to a loopback host, and only when
    `allow_loopback_http` (the embedded stack on one machine).
    """
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
    if fhir_server is not None and not is_fhir_server_url(fhir_server, allow_loopback_http):
        problems.append(
            "'fhirServer' must be an https URL"
            + (" (or http on a loopback host)" if allow_loopback_http else "")
        )
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
        elif not is_fhir_id(patient_id):
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


def is_fhir_server_url(value: object, allow_loopback_http: bool) -> bool:
    """An absolute https URL with a host and no credentials; http only to a loopback host."""
    if not isinstance(value, str):
        return False
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return False
    if not url.hostname or url.username is not None or url.password is not None:
        return False
    if url.scheme == "https":
        return True
    return url.scheme == "http" and allow_loopback_http and is_loopback_host(url.hostname)
