"""cdsflow FHIR: the EHR client and its auth (static bearer, SMART Backend Services), safe
JSON parsing, edge validation, the patient reference rule and OperationOutcome bodies."""

from cdsflow.fhir.access_token_metrics import AccessTokenMetrics, count_access_tokens
from cdsflow.fhir.access_tokens import AccessToken, EhrAuthError
from cdsflow.fhir.client import EhrClient, EhrError, is_ehr_outage
from cdsflow.fhir.client_assertion import (
    SigningKey,
    UnusableSigningKey,
    client_assertion,
    load_signing_key,
)
from cdsflow.fhir.ehr_connections import ehr_connections, environment_proxy
from cdsflow.fhir.hosts import is_loopback_host
from cdsflow.fhir.json_documents import MAX_JSON_DEPTH, MalformedJson, parse_json_document
from cdsflow.fhir.outcomes import FHIR_JSON, operation_outcome
from cdsflow.fhir.references import (
    is_fhir_id,
    is_patient_reference,
    local_patient_reference,
    normalised_base_url,
)
from cdsflow.fhir.smart_backend_auth import BackendServicesClient, SmartBackendAuth
from cdsflow.fhir.static_bearer_auth import StaticBearerAuth
from cdsflow.fhir.validation import InvalidResource, parse_resource_json, validate_resource

__all__ = [
    "FHIR_JSON",
    "MAX_JSON_DEPTH",
    "AccessToken",
    "AccessTokenMetrics",
    "BackendServicesClient",
    "EhrAuthError",
    "EhrClient",
    "EhrError",
    "InvalidResource",
    "MalformedJson",
    "SigningKey",
    "SmartBackendAuth",
    "StaticBearerAuth",
    "UnusableSigningKey",
    "client_assertion",
    "count_access_tokens",
    "ehr_connections",
    "environment_proxy",
    "is_ehr_outage",
    "is_fhir_id",
    "is_loopback_host",
    "is_patient_reference",
    "load_signing_key",
    "local_patient_reference",
    "normalised_base_url",
    "operation_outcome",
    "parse_json_document",
    "parse_resource_json",
    "validate_resource",
]
