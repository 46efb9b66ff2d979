"""Validate FHIR resources once, at the edge.

fhir.resources ships R4B and R5 models, not R4; R4B's resources used here (Observation,
Patient, Encounter, RiskAssessment, ...) are structurally R4, so R4B validates R4 payloads.
The models are lenient where FHIR's JSON format is not (a decimal sent as a string, a `null`
element), so `json_representation_problems` checks those rules on the JSON itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from cdsflow.fhir.json_documents import MalformedJson, parse_json_document
from cdsflow.fhir.json_representation import json_representation_problems
from cdsflow.fhir.references import is_fhir_id
from fhir.resources import get_fhir_model_class as get_r5_model_class
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from fhir.resources.resource import Resource as R5Resource

_MAX_PROBLEMS = 20
# base classes, not resources a server can hold
_ABSTRACT_RESOURCES = frozenset({"Resource", "DomainResource"})


@dataclass(frozen=True)
class InvalidResource(Exception):
    """The body is not a valid FHIR resource; `problems` name the elements, not their values.

    `reason` is a fixed label for metrics: `not-json`, `too-deep`, ... or `not-fhir`, `invalid`.
    """

    problems: list[str]
    reason: str = "invalid"

    def __str__(self) -> str:
        return "; ".join(self.problems)


def parse_resource_json(raw: bytes) -> dict[str, Any]:
    """Parse a JSON body that must be a FHIR resource (an object with `resourceType`)."""
    try:
        body = parse_json_document(raw)
    except MalformedJson as exc:
        raise InvalidResource([exc.description], exc.reason) from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise InvalidResource(
            ["body is not a FHIR resource: 'resourceType' is missing"], "not-fhir"
        )
    return body


def validate_resource(resource: dict[str, Any], release: Literal["R4", "R5"] = "R4") -> None:
    """Raise `InvalidResource` unless `resource` is a valid FHIR resource of its type: FHIR
    R4 (the R4B models), or with `release="R5"` FHIR R5 (what an R5 notification carries)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidResource(["'resourceType' is missing"], "not-fhir")
    lookup, base = (
        (get_fhir_model_class, Resource) if release == "R4" else (get_r5_model_class, R5Resource)
    )
    try:
        model = lookup(resource_type)
    except (KeyError, ValueError):
        model = None
    if model is None or not issubclass(model, base) or resource_type in _ABSTRACT_RESOURCES:
        # the unknown name is not repeated: a client may put anything there
        raise InvalidResource([f"'resourceType' is not a FHIR {release} resource type"], "not-fhir")
    if "id" in resource and not is_fhir_id(resource["id"]):
        raise InvalidResource(["id: not a FHIR id ([A-Za-z0-9-.]{1,64})"])
    try:
        instance = model.model_validate(resource)
    except ValidationError as exc:
        problems = [_problem(err, resource_type) for err in exc.errors(include_input=False)]
        raise InvalidResource(problems[:_MAX_PROBLEMS]) from None
    problems = json_representation_problems(resource, instance)
    if problems:
        raise InvalidResource(problems[:_MAX_PROBLEMS])


def _problem(error: Any, resource_type: str) -> str:
    """`element.path: error kind`; an unknown element is named by where it is, not its name."""
    location = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":
        where = ".".join(location[:-1]) or resource_type
        return f"{where}: unknown element"
    return f"{'.'.join(location) or resource_type}: {error['type']}"
