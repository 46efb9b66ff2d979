"""The AuditEvent of a hook answer with cards or system actions: a BALP-style export to the
caller."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from cdsflow.writeback.domain.hook_disclosure_audit import (
    HookDisclosure,
    disclosed,
    hook_disclosure_audit,
    hook_disclosure_search,
    hook_disclosure_transaction,
)

DISCLOSURE = HookDisclosure(
    patient_reference="Patient/pat-1",
    service_id="cdsflow-deterioration",
    hook_instance="d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    card_uuids=["c-1", "c-2"],
    caller="https://ehr.example.org/",
    trace_id="0af7651916cd43dd8448eb211c80319c",
    recorded=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
)


def test_the_caller_is_the_requesting_destination_and_the_writeback_the_source() -> None:
    audit = hook_disclosure_audit(DISCLOSURE)

    assert (audit["action"], audit["outcome"], audit["type"]["code"]) == ("R", "0", "110106")
    assert audit["recorded"] == "2026-11-29T12:00:00Z"
    source, destination = audit["agent"]
    assert source["type"]["coding"][0]["code"] == "110153"
    assert not source["requestor"]
    assert destination["type"]["coding"][0]["code"] == "110152"
    assert destination["requestor"]
    assert destination["who"]["identifier"]["value"] == "https://ehr.example.org/"


def test_the_patient_each_card_the_call_and_the_trace_are_its_entities() -> None:
    entities = hook_disclosure_audit(DISCLOSURE)["entity"]

    assert entities[0]["what"] == {"reference": "Patient/pat-1"}
    assert [e["what"]["identifier"]["value"] for e in entities[1:3]] == ["c-1", "c-2"]
    assert entities[3]["role"]["code"] == "24"
    assert entities[3]["what"]["identifier"]["value"] == DISCLOSURE.hook_instance
    assert entities[4]["what"]["identifier"]["value"] == DISCLOSURE.trace_id


def test_it_is_tagged_and_found_by_its_hook_instance() -> None:
    audit = hook_disclosure_audit(DISCLOSURE)

    assert audit["meta"]["tag"] == [
        {"system": "urn:cdsflow:hook-instance", "code": DISCLOSURE.hook_instance}
    ]
    assert hook_disclosure_search(DISCLOSURE.hook_instance) == (
        "_tag=urn:cdsflow:hook-instance|d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    )


def test_an_unauthenticated_caller_is_named_as_such() -> None:
    audit = hook_disclosure_audit(
        HookDisclosure(**{**DISCLOSURE.__dict__, "caller": None, "trace_id": None})
    )

    assert audit["agent"][1]["who"] == {"display": "unauthenticated caller"}
    assert len(audit["entity"]) == 4


def test_a_batch_of_disclosures_is_one_transaction_of_plain_creates() -> None:
    second = replace(DISCLOSURE, hook_instance="2f4c4c1e-7d0c-4f4e-9a53-0e5d1c7e9d11")

    bundle = json.loads(hook_disclosure_transaction([DISCLOSURE, second]))

    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")
    assert [entry["request"] for entry in bundle["entry"]] == [
        {"method": "POST", "url": "AuditEvent"}
    ] * 2
    assert [entry["resource"] for entry in bundle["entry"]] == [
        hook_disclosure_audit(DISCLOSURE),
        hook_disclosure_audit(second),
    ]


FLAG_CREATE = {
    "type": "create",
    "description": "Flag the chart: deterioration risk 83% within 24 h",
    "resource": {"resourceType": "Flag", "status": "active", "subject": {"reference": "x"}},
}
ASSESSMENT_UPDATE = {
    "type": "update",
    "description": "Record the latest risk",
    "resource": {"resourceType": "RiskAssessment", "id": "ra-1", "status": "final"},
}
ORDER_DELETE = {
    "type": "delete",
    "description": "Withdraw the draft order",
    "resourceId": ["ServiceRequest/sr-1"],
}


def test_each_system_action_given_is_an_entity_that_says_so_without_its_content() -> None:
    actions_only = replace(
        DISCLOSURE, card_uuids=[], system_actions=[FLAG_CREATE, ASSESSMENT_UPDATE, ORDER_DELETE]
    )

    audit = hook_disclosure_audit(actions_only)

    given = [e for e in audit["entity"] if "CDS Hooks system action" in str(e["what"])]
    assert [entity["what"] for entity in given] == [
        {"display": "CDS Hooks system action create Flag", "type": "Flag"},
        {
            "display": "CDS Hooks system action update RiskAssessment",
            "type": "RiskAssessment",
            "reference": "RiskAssessment/ra-1",
        },
        {
            "display": "CDS Hooks system action delete ServiceRequest",
            "type": "ServiceRequest",
            "reference": "ServiceRequest/sr-1",
        },
    ]
    assert [entity["detail"] for entity in given] == [
        [{"type": "action", "valueString": kind}] for kind in ("create", "update", "delete")
    ]
    assert {(e["type"]["code"], e["role"]["code"]) for e in given} == {("2", "4")}
    assert "deterioration risk" not in json.dumps(audit)  # what it said stays in the answer
    assert len(audit["entity"]) == 1 + 3 + 2  # the patient, the actions, the call, the trace


def test_what_an_answer_disclosed_is_counted_by_kind() -> None:
    assert disclosed(DISCLOSURE) == "cards"
    assert disclosed(replace(DISCLOSURE, card_uuids=[], system_actions=[FLAG_CREATE])) == (
        "system-actions"
    )
    assert disclosed(replace(DISCLOSURE, system_actions=[FLAG_CREATE])) == (
        "cards-and-system-actions"
    )
