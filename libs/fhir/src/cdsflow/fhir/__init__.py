"""cdsflow FHIR: the EHR client, edge validation and OperationOutcome bodies."""

from cdsflow.fhir.client import EhrClient, EhrError
from cdsflow.fhir.outcomes import FHIR_JSON, operation_outcome
from cdsflow.fhir.validation import InvalidResource, parse_resource_json, validate_resource

__all__ = [
    "FHIR_JSON",
    "EhrClient",
    "EhrError",
    "InvalidResource",
    "operation_outcome",
    "parse_resource_json",
    "validate_resource",
]
