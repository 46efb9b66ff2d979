"""The `AuditEvent` that records cards and system actions given to a CDS Hooks caller as a
disclosure, IHE BALP style (the write-back's own disclosure is `disclosure_audit.py`).

Cards tell the caller something about a patient, and so do `systemActions` (a Flag to create
says what the model found as plainly as a card), so each hook answer with cards or system
actions is an export of patient information to that caller, recorded by the writeback (the
server):

- `type` DICOM `110106` Export, `action` `R` (the caller read it), `outcome` `0`;
- agents: the writeback as the source (DICOM `110153` Source Role ID), the caller as the
  destination and requestor (`110152` Destination Role ID; its JWT `iss` as the identifier,
  or "unauthenticated caller" in a development setup);
- `source.observer`: the writeback;
- entities: the patient (type 1 Person, role 1 Patient), each card shown (type 2 System
  Object, role 4 Domain Resource, identified by its uuid as the write-back's DetectedIssue
  is), each system action given (type 2 System Object, role 4 Domain Resource, `what` naming
  it as a CDS Hooks system action with its resource type, and the resource when the action
  names one by id; `detail` `action` = create, update or delete), the hook call
  (`hookInstance`, role 24 Query, with the service id as its name), and the trace id (BALP
  `XrequestId`).

Tagged with the hook instance (`urn:cdsflow:hook-instance`), so that the EHR finds it by the
call. It is a plain create, not a conditional one: each answer is a disclosure (an EHR that
calls twice was told twice), and a conditional create would cost the EHR a search per audit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdsflow.writeback.domain.conditional_criteria import token_criteria
from cdsflow.writeback.domain.detected_issue import CARD_SYSTEM
from cdsflow.writeback.domain.disclosure_audit import (
    BALP_ENTITY_TYPE_SYSTEM,
    DICOM_SYSTEM,
    ENTITY_TYPE_SYSTEM,
    OBJECT_ROLE_SYSTEM,
    audit_source,
    coding,
    concept,
)
from cdsflow.writeback.domain.provenance import fhir_instant, writeback_agent

HOOK_INSTANCE_SYSTEM = "urn:cdsflow:hook-instance"
CALLER_SYSTEM = "urn:cdsflow:cds-hooks-client"
SYSTEM_ACTION_DISPLAY = "CDS Hooks system action"


@dataclass(frozen=True)
class HookDisclosure:
    """What one hook answer disclosed, to whom."""

    patient_reference: str
    service_id: str
    hook_instance: str
    card_uuids: Sequence[str]
    # the caller's JWT issuer; None when hook calls are not authenticated (development)
    caller: str | None
    trace_id: str | None
    recorded: datetime
    # the answer's CDS Hooks `systemActions` (type, description, resource or resourceId)
    system_actions: Sequence[Mapping[str, Any]] = ()


def hook_disclosure_search(hook_instance: str) -> str:
    """The search that finds the AuditEvents of this hook call."""
    return token_criteria("_tag", HOOK_INSTANCE_SYSTEM, hook_instance)


def hook_disclosure_audit(disclosure: HookDisclosure) -> dict[str, Any]:
    caller: dict[str, Any] = (
        {"identifier": {"system": CALLER_SYSTEM, "value": disclosure.caller}}
        if disclosure.caller
        else {"display": "unauthenticated caller"}
    )
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": disclosure.patient_reference},
            "type": coding(ENTITY_TYPE_SYSTEM, "1", "Person"),
            "role": coding(OBJECT_ROLE_SYSTEM, "1", "Patient"),
        },
        *(
            {
                "what": {"identifier": {"system": CARD_SYSTEM, "value": card_uuid}},
                "type": coding(ENTITY_TYPE_SYSTEM, "2", "System Object"),
                "role": coding(OBJECT_ROLE_SYSTEM, "4", "Domain Resource"),
            }
            for card_uuid in disclosure.card_uuids
        ),
        *(system_action_entity(action) for action in disclosure.system_actions),
        {
            "what": {
                "identifier": {"system": HOOK_INSTANCE_SYSTEM, "value": disclosure.hook_instance}
            },
            "type": coding(ENTITY_TYPE_SYSTEM, "2", "System Object"),
            "role": coding(OBJECT_ROLE_SYSTEM, "24", "Query"),
            "name": f"CDS Hooks service {disclosure.service_id}",
        },
    ]
    if disclosure.trace_id:
        entities.append(
            {
                "what": {"identifier": {"value": disclosure.trace_id}},
                "type": coding(BALP_ENTITY_TYPE_SYSTEM, "XrequestId", "X-Request-Id"),
            }
        )
    return {
        "resourceType": "AuditEvent",
        "meta": {
            "tag": [{"system": HOOK_INSTANCE_SYSTEM, "code": disclosure.hook_instance}],
        },
        "type": coding(DICOM_SYSTEM, "110106", "Export"),
        "action": "R",
        "recorded": fhir_instant(disclosure.recorded),
        "outcome": "0",
        "agent": [
            {
                "type": concept(DICOM_SYSTEM, "110153", "Source Role ID"),
                "who": writeback_agent(),
                "requestor": False,
            },
            {
                "type": concept(DICOM_SYSTEM, "110152", "Destination Role ID"),
                "who": caller,
                "requestor": True,
            },
        ],
        "source": audit_source(),
        "entity": entities,
    }


def system_action_entity(action: Mapping[str, Any]) -> dict[str, Any]:
    """A system action given, as an entity: the kind of resource it creates, updates or
    deletes, and which one where it names a single one (`resource.id`, or one `resourceId`);
    never the resource's content."""
    resource = action.get("resource")
    resource = resource if isinstance(resource, Mapping) else {}
    resource_type = resource.get("resourceType")
    resource_type = resource_type if isinstance(resource_type, str) else None
    resource_id = resource.get("id")
    named = (
        [f"{resource_type}/{resource_id}"] if resource_type and isinstance(resource_id, str) else []
    )
    named += [item for item in action.get("resourceId", []) if isinstance(item, str)]
    if resource_type is None and named:
        resource_type = named[0].partition("/")[0]
    what: dict[str, Any] = {
        "display": " ".join(filter(None, (SYSTEM_ACTION_DISPLAY, action["type"], resource_type)))
    }
    if resource_type:
        what["type"] = resource_type
    if len(named) == 1:
        what["reference"] = named[0]
    return {
        "what": what,
        "type": coding(ENTITY_TYPE_SYSTEM, "2", "System Object"),
        "role": coding(OBJECT_ROLE_SYSTEM, "4", "Domain Resource"),
        "detail": [{"type": "action", "valueString": action["type"]}],
    }


def disclosed(disclosure: HookDisclosure) -> str:
    """What the answer disclosed, as counted: `cards`, `system-actions`, or both."""
    if disclosure.card_uuids and disclosure.system_actions:
        return "cards-and-system-actions"
    return "cards" if disclosure.card_uuids else "system-actions"


def hook_disclosure_transaction(disclosures: Sequence[HookDisclosure]) -> bytes:
    """One transaction Bundle (JSON bytes) that creates each disclosure's AuditEvent."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": hook_disclosure_audit(disclosure),
                "request": {"method": "POST", "url": "AuditEvent"},
            }
            for disclosure in disclosures
        ],
    }
    return json.dumps(bundle, separators=(",", ":")).encode()
