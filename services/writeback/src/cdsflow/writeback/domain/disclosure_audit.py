"""The `AuditEvent` that records a write-back as a disclosure to the EHR, IHE BALP style.

It follows BALP's "PatientCreate" pattern (`https://profiles.ihe.net/ITI/BALP/
StructureDefinition/IHE.BasicAudit.PatientCreate`), recorded by the client:

- `type` rest, `subtype` create, `action` C, `outcome` 0 (success);
- agents: the writeback as the source (DICOM `110153` Source Role ID), the EHR as the
  destination (`110152` Destination Role ID, its base URL as the network address), and the
  model's Device as the author (`AUT`, the requestor);
- `source.observer`: the writeback;
- entities: the patient (type 1 Person, role 1 Patient), each written resource (type 2
  System Object, role 4 Domain Resource), and the trace id as BALP's `XrequestId` entity.

It is written inside the same transaction as what it records, so that it exists exactly
when the disclosure happened (and, matched on the recommendation tag, once).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cdsflow.contracts import Recommendation
from cdsflow.writeback.domain.provenance import fhir_instant, writeback_agent
from cdsflow.writeback.domain.risk_assessment import recommendation_tag

BALP_PATIENT_CREATE = (
    "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientCreate"
)
BALP_ENTITY_TYPE_SYSTEM = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
DICOM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE_SYSTEM = "http://terminology.hl7.org/CodeSystem/object-role"


def disclosure_audit_for(
    recommendation: Recommendation,
    *,
    written: Sequence[str],
    model_device: str,
    ehr_base_url: str,
    trace_id: str | None,
    recorded: datetime,
) -> dict[str, Any]:
    """The AuditEvent of writing `written` (references; urn:uuid inside a Bundle)."""
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": recommendation.patient_reference},
            "type": coding(ENTITY_TYPE_SYSTEM, "1", "Person"),
            "role": coding(OBJECT_ROLE_SYSTEM, "1", "Patient"),
        },
        *(
            {
                "what": {"reference": reference},
                "type": coding(ENTITY_TYPE_SYSTEM, "2", "System Object"),
                "role": coding(OBJECT_ROLE_SYSTEM, "4", "Domain Resource"),
            }
            for reference in written
        ),
    ]
    if trace_id:
        entities.append(
            {
                "what": {"identifier": {"value": trace_id}},
                "type": coding(BALP_ENTITY_TYPE_SYSTEM, "XrequestId", "X-Request-Id"),
            }
        )
    return {
        "resourceType": "AuditEvent",
        "meta": {
            "profile": [BALP_PATIENT_CREATE],
            "tag": [recommendation_tag(recommendation.recommendation_id)],
        },
        "type": coding(
            "http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "Restful Operation"
        ),
        "subtype": [coding("http://hl7.org/fhir/restful-interaction", "create", "create")],
        "action": "C",
        "recorded": fhir_instant(recorded),
        "outcome": "0",
        "agent": [
            {
                "type": concept(DICOM_SYSTEM, "110153", "Source Role ID"),
                "who": writeback_agent(),
                "requestor": False,
            },
            {
                "type": concept(DICOM_SYSTEM, "110152", "Destination Role ID"),
                "who": {"display": "the EHR's FHIR server"},
                "requestor": False,
                "network": {"address": ehr_base_url, "type": "5"},
            },
            {
                "type": concept(
                    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "AUT",
                    "author (originator)",
                ),
                "who": {"reference": model_device},
                "requestor": True,
            },
        ],
        "source": audit_source(),
        "entity": entities,
    }


def audit_source() -> dict[str, Any]:
    """`AuditEvent.source`: the writeback, an application server, observed it."""
    return {
        "observer": writeback_agent(),
        "type": [
            coding(
                "http://terminology.hl7.org/CodeSystem/security-source-type",
                "4",
                "Application Server",
            )
        ],
    }


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [coding(system, code, display)]}
