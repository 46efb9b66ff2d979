"""cdsflow FHIR: the EHR client, safe JSON parsing, edge validation, the patient reference
rule and OperationOutcome bodies."""

from cdsflow.fhir.client import EhrClient, EhrError, is_ehr_outage
from cdsflow.fhir.hosts import is_loopback_host
from cdsflow.fhir.json_documents import MAX_JSON_DEPTH, MalformedJson, parse_json_document
from cdsflow.fhir.outcomes import FHIR_JSON, operation_outcome
from cdsflow.fhir.references import (
    is_fhir_id,
    is_patient_reference,
    local_patient_reference,
    normalised_base_url,
)
from cdsflow.fhir.validation import InvalidResource, parse_resource_json, validate_resource

__all__ = [
    "FHIR_JSON",
    "MAX_JSON_DEPTH",
    "EhrClient",
    "EhrError",
    "InvalidResource",
    "MalformedJson",
    "is_ehr_outage",
    "is_fhir_id",
    "is_loopback_host",
    "is_patient_reference",
    "local_patient_reference",
    "normalised_base_url",
    "operation_outcome",
    "parse_json_document",
    "parse_resource_json",
    "validate_resource",
]
