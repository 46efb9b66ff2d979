"""Validate FHIR resources once, at the edge.

fhir.resources ships R4B and R5 models, not R4; R4B's resources used here (Observation,
Patient, Encounter, RiskAssessment, ...) are structurally R4, so R4B validates R4 payloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from fhir.resources.R4B import get_fhir_model_class


@dataclass(frozen=True)
class InvalidResource(Exception):
    """The body is not a valid FHIR resource; `problems` name the elements, not their values."""

    problems: list[str]

    def __str__(self) -> str:
        return "; ".join(self.problems)


def parse_resource_json(raw: bytes) -> dict[str, Any]:
    """Parse a JSON body that must be a FHIR resource (an object with `resourceType`)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidResource([f"body is not JSON ({type(exc).__name__})"]) from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise InvalidResource(["body is not a FHIR resource: 'resourceType' is missing"])
    return body


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise `InvalidResource` unless `resource` is a valid FHIR resource of its type."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidResource(["'resourceType' is missing"])
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError):
        raise InvalidResource([f"unknown resourceType '{resource_type}'"]) from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        # element paths and error kinds only: input values may be patient data
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or resource_type}: {err['type']}"
            for err in exc.errors(include_input=False, include_url=False)
        ]
        raise InvalidResource(problems[:20]) from None
