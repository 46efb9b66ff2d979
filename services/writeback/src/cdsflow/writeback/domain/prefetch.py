"""Prefetch (CDS Hooks 2.0 "Providing FHIR Resources to a CDS Service"): which of a
service's templates the EHR satisfied, the queries for the ones it did not, and the FHIR
resources in what it sent.

A value the EHR sent as `null`, or as an `OperationOutcome` (a prefetch error), counts as not
provided: the service fetches it itself when it may, else it answers 412. Tokens are
resolved as the spec says: `{{context.<member>}}` from the hook's context (the ids here),
`{{userPractitionerId}}` (and `userPractitionerRoleId`, `userPatientId`,
`userRelatedPersonId`) from `context.userId` when it names that resource type. A template
with a token that cannot be resolved (e.g. a 3.0 FHIRPath expression) cannot be fetched.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdsflow.fhir import is_fhir_id
from cdsflow.writeback.domain.hook_requests import HookRequest

_TOKEN = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass(frozen=True)
class PrefetchPlan:
    """What the EHR sent that is usable, and what must still be fetched."""

    # key -> the resources of what the EHR sent
    provided: Mapping[str, list[dict[str, Any]]]
    # key -> the resolved query (relative to fhirServer) of each template not satisfied
    to_fetch: Mapping[str, str]
    # keys not satisfied whose template cannot be resolved from this request
    unresolvable: tuple[str, ...]


def prefetch_plan(templates: Mapping[str, str], request: HookRequest) -> PrefetchPlan:
    provided: dict[str, list[dict[str, Any]]] = {}
    to_fetch: dict[str, str] = {}
    unresolvable: list[str] = []
    for key, template in templates.items():
        value = request.prefetch.get(key)
        if isinstance(value, dict) and is_provided(value):
            provided[key] = resources_of(value)
            continue
        query = resolved_query(template, request)
        if query is None:
            unresolvable.append(key)
        else:
            to_fetch[key] = query
    return PrefetchPlan(provided, to_fetch, tuple(unresolvable))


def is_provided(value: Any) -> bool:
    """A FHIR resource other than an OperationOutcome (null and errors are not provided)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and value["resourceType"] != "OperationOutcome"
    )


def resources_of(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A read's resource, or a searchset's matches (its OperationOutcome entries, e.g. a
    warning with `search.mode` outcome, are left out)."""
    if value.get("resourceType") != "Bundle":
        return [dict(value)]
    entries = value.get("entry") or []
    found = []
    for entry in entries if isinstance(entries, list) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and is_provided(resource):
            found.append(resource)
    return found


def resolved_query(template: str, request: HookRequest) -> str | None:
    """The template with its tokens replaced; None when one cannot be."""
    values = token_values(request)
    unresolved = False

    def replace(match: re.Match[str]) -> str:
        nonlocal unresolved
        value = values.get(match.group(1))
        if value is None:
            unresolved = True
            return ""
        return value

    query = _TOKEN.sub(replace, template)
    return None if unresolved else query


def token_values(request: HookRequest) -> dict[str, str]:
    """Each token's value; only FHIR ids (and `Type/id`) are put into a query, so that a
    context member cannot add search parameters of its own."""
    values = {"context.patientId": request.patient_id}
    if request.encounter_id and is_fhir_id(request.encounter_id):
        values["context.encounterId"] = request.encounter_id
    if request.user_id:
        kind, _, user_id = request.user_id.partition("/")
        if kind.isalpha() and is_fhir_id(user_id):
            values["context.userId"] = request.user_id
            for token, resource_type in _USER_TOKENS.items():
                if kind == resource_type:
                    values[token] = user_id
    return values
