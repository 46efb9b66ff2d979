"""Validation of a CDS Hooks 2.0 request (`patient-view`, `order-select`, `order-sign`,
`encounter-start`), before anything is looked up.

Each hook's context is checked as the Hook Library (1.0.1) defines it:

| hook | required context |
|---|---|
| `patient-view` | `patientId` |
| `order-select` | `patientId`, `selections` (references), `draftOrders` (a Bundle) |
| `order-sign` | `patientId`, `draftOrders` (a Bundle) |
| `encounter-start` | `patientId`, `encounterId` |

`userId` is optional here (the spec requires it, but nothing here needs it; when given it is
`Type/id`). Members this service does not know (the 3.0 ballot's, extensions) are accepted
and ignored. Problems name the member that is wrong and never echo its value (an id may
identify a patient).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cdsflow.fhir import MalformedJson, is_fhir_id, is_loopback_host, parse_json_document

PATIENT_VIEW = "patient-view"
ORDER_SELECT = "order-select"
ORDER_SIGN = "order-sign"
ENCOUNTER_START = "encounter-start"
HOOKS = (PATIENT_VIEW, ORDER_SELECT, ORDER_SIGN, ENCOUNTER_START)
# hooks about orders not in the EHR yet: their context's draft orders are always scored
ORDER_HOOKS = frozenset({ORDER_SELECT, ORDER_SIGN})


@dataclass(frozen=True)
class InvalidHookRequest(Exception):
    """The request is not a call this service can answer.

    `reason` is a fixed label for metrics: `not-json`, `too-deep`, ... or `invalid`.
    """

    problems: list[str]
    reason: str = "invalid"

    def __str__(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True)
class FhirAuthorization:
    """The bearer token the EHR lends for `fhirServer` (never logged, never kept)."""

    access_token: str = field(repr=False)


@dataclass(frozen=True)
class HookRequest:
    hook_instance: str
    patient_id: str
    hook: str = PATIENT_VIEW
    user_id: str | None = None
    encounter_id: str | None = None
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = None
    # prefetch key -> what the EHR sent (a FHIR resource, or None)
    prefetch: dict[str, Any] = field(default_factory=dict)
    # the draftOrders Bundle's resources (order-select, order-sign)
    draft_orders: tuple[dict[str, Any], ...] = ()
    selections: tuple[str, ...] = ()
    # the hook's context as sent (3.0 FHIRPath prefetch tokens read it)
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def patient_reference(self) -> str:
        return f"Patient/{self.patient_id}"


# the name it had while patient-view was the only hook
PatientViewRequest = HookRequest


def parse_hook_request(
    raw: bytes, *, hook: str | None = None, allow_loopback_http: bool = False
) -> HookRequest:
    """Parse and validate the body of `POST /cds-services/{id}`; `hook` is the service's hook
    (None: any of `HOOKS`)."""
    try:
        body = parse_json_document(raw)
    except MalformedJson as exc:
        raise InvalidHookRequest([exc.description], exc.reason) from None
    return hook_request(body, hook=hook, allow_loopback_http=allow_loopback_http)


def patient_view_request(body: Any, *, allow_loopback_http: bool = False) -> HookRequest:
    """A decoded `patient-view` request, validated (see `hook_request`)."""
    return hook_request(body, hook=PATIENT_VIEW, allow_loopback_http=allow_loopback_http)


def hook_request(
    body: Any, *, hook: str | None = None, allow_loopback_http: bool = False
) -> HookRequest:
    """Validate a decoded hook request; raise `InvalidHookRequest` listing every problem.

    `fhirServer` must be an https URL; plain http only to a loopback host, and only when
    `allow_loopback_http` (the embedded stack on one machine).
    """
    if not isinstance(body, dict):
        raise InvalidHookRequest(["the body is not a JSON object"])
    problems: list[str] = []
    called = body.get("hook")
    if not isinstance(called, str) or not called:
        problems.append("'hook' is required and must be a string")
    elif hook is not None and called != hook:
        problems.append(f"this service answers the '{hook}' hook only")
    elif called not in HOOKS:
        problems.append(f"'hook' must be one of {', '.join(HOOKS)}")
    hook_instance = body.get("hookInstance")
    if not isinstance(hook_instance, str) or not hook_instance:
        problems.append("'hookInstance' is required and must be a string")
    fhir_server = body.get("fhirServer")
    if fhir_server is not None and not is_fhir_server_url(fhir_server, allow_loopback_http):
        problems.append(
            "'fhirServer' must be an https URL"
            + (" (or http on a loopback host)" if allow_loopback_http else "")
        )
    authorization = _fhir_authorization(body.get("fhirAuthorization"), problems)
    if body.get("fhirAuthorization") is not None and fhir_server is None:
        problems.append("'fhirServer' is required when 'fhirAuthorization' is present")
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        problems.append("'prefetch' must be an object")
    elif isinstance(prefetch, dict) and any(
        value is not None and not isinstance(value, dict) for value in prefetch.values()
    ):
        problems.append("each 'prefetch' value must be a FHIR resource (an object) or null")
    context = body.get("context")
    patient_id: Any = None
    draft_orders: tuple[dict[str, Any], ...] = ()
    selections: tuple[str, ...] = ()
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
        checked = called if called in HOOKS else None
        draft_orders, selections = _hook_context(checked, context, problems)
    if problems:
        raise InvalidHookRequest(problems)
    assert isinstance(context, dict)
    return HookRequest(
        hook_instance=str(hook_instance),
        patient_id=str(patient_id),
        hook=str(called),
        user_id=context.get("userId"),
        encounter_id=context.get("encounterId"),
        fhir_server=fhir_server,
        fhir_authorization=authorization,
        prefetch=dict(prefetch or {}),
        draft_orders=draft_orders,
        selections=selections,
        context=context,
    )


def _hook_context(
    hook: str | None, context: dict[str, Any], problems: list[str]
) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    """The hook-specific context members, checked; (draft order resources, selections)."""
    if hook == ENCOUNTER_START:
        encounter_id = context.get("encounterId")
        if not isinstance(encounter_id, str) or not is_fhir_id(encounter_id):
            problems.append("'context.encounterId' is required (a FHIR resource id)")
    if hook not in ORDER_HOOKS:
        return (), ()
    draft_orders = _bundle_resources(context.get("draftOrders"))
    if draft_orders is None:
        problems.append("'context.draftOrders' is required and must be a FHIR Bundle")
        draft_orders = ()
    selections: tuple[str, ...] = ()
    if hook == ORDER_SELECT:
        given = context.get("selections")
        if (
            not isinstance(given, list)
            or not given
            or not all(isinstance(s, str) and "/" in s for s in given)
        ):
            problems.append(
                "'context.selections' is required: a non-empty array of references (Type/id)"
            )
        else:
            selections = tuple(given)
    return draft_orders, selections


def _bundle_resources(value: Any) -> tuple[dict[str, Any], ...] | None:
    """The resources of a Bundle (entries without one are skipped); None when not a Bundle."""
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        return None
    entries = value.get("entry", [])
    if not isinstance(entries, list):
        return None
    return tuple(
        entry["resource"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    )


def _fhir_authorization(value: Any, problems: list[str]) -> FhirAuthorization | None:
    """`fhirAuthorization`: an object with a bearer `access_token` (the rest of its members
    are the EHR's business: scope, expiry, subject)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append("'fhirAuthorization' must be an object")
        return None
    token = value.get("access_token")
    token_type = value.get("token_type")
    if not isinstance(token, str) or not token or not token.isprintable():
        problems.append("'fhirAuthorization.access_token' is required and must be a string")
        return None
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        problems.append("'fhirAuthorization.token_type' must be 'Bearer'")
        return None
    return FhirAuthorization(access_token=token)


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
