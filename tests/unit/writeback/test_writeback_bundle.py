"""The transaction Bundle written into the EHR for one active recommendation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cdsflow.contracts import Card, Indicator
from cdsflow.fhir import validate_resource
from cdsflow.writeback.domain.conditional_criteria import token_criteria
from cdsflow.writeback.domain.writeback_bundle import created_entries, writeback_bundle

from .sample_recommendations import EHR_BASE_URL, recommendation

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
RECORDED = datetime(2025, 3, 4, 10, 31, tzinfo=UTC)
AIAST = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")
MODEL_CARD = "https://models.example.org/deterioration-gbm/7"


def bundle_for(**overrides: Any) -> dict[str, Any]:
    return writeback_bundle(
        recommendation(**overrides),
        trace_id=TRACE_ID,
        recorded=RECORDED,
        ehr_base_url=EHR_BASE_URL,
    )


def by_type(bundle: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in bundle["entry"]:
        found.setdefault(entry["resource"]["resourceType"], []).append(entry)
    return found


def labels(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(label["system"], label["code"]) for label in resource["meta"].get("security", [])}


def test_it_is_one_valid_transaction_of_conditional_creates() -> None:
    bundle = bundle_for()

    validate_resource(bundle)
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])
        assert entry["fullUrl"].startswith("urn:uuid:")
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == entry["resource"]["resourceType"]
        assert entry["request"]["ifNoneExist"]
    assert [entry["resource"]["resourceType"] for entry in bundle["entry"]] == [
        "Device",
        "RiskAssessment",
        "DetectedIssue",
        "Provenance",
        "AuditEvent",
    ]
    assert len({entry["fullUrl"] for entry in bundle["entry"]}) == len(bundle["entry"])


def test_the_same_recommendation_always_yields_the_same_entries() -> None:
    assert [e["fullUrl"] for e in bundle_for()["entry"]] == [
        e["fullUrl"] for e in bundle_for()["entry"]
    ]
    other = bundle_for(recommendation_id="rec-0002")
    assert not {e["fullUrl"] for e in other["entry"]} & {
        e["fullUrl"] for e in bundle_for()["entry"]
    }


def test_conditional_creates_match_on_what_the_ehr_indexes() -> None:
    entries = by_type(bundle_for(recommendation_id="rec-42"))

    recommendation_tag = "_tag=urn:cdsflow:recommendation|rec-42"
    assert entries["RiskAssessment"][0]["request"]["ifNoneExist"] == recommendation_tag
    assert entries["Provenance"][0]["request"]["ifNoneExist"] == recommendation_tag
    assert entries["AuditEvent"][0]["request"]["ifNoneExist"] == recommendation_tag
    issue = entries["DetectedIssue"][0]
    card_uuid = issue["resource"]["identifier"][0]["value"]
    assert issue["request"]["ifNoneExist"] == f"_tag=urn:cdsflow:card|{card_uuid}"
    assert {"system": "urn:cdsflow:card", "code": card_uuid} in issue["resource"]["meta"]["tag"]
    assert (
        entries["Device"][0]["request"]["ifNoneExist"]
        == "identifier=urn:cdsflow:model|deterioration-gbm/7"
    )
    for kind in ("RiskAssessment", "DetectedIssue", "Provenance", "AuditEvent"):
        tags = entries[kind][0]["resource"]["meta"]["tag"]
        assert {"system": "urn:cdsflow:recommendation", "code": "rec-42"} in tags


def test_an_id_cannot_change_the_meaning_of_the_criteria() -> None:
    criteria = token_criteria("_tag", "urn:cdsflow:recommendation", "a,b|c&_tag=x y$")

    assert criteria == "_tag=urn:cdsflow:recommendation|a\\%2Cb\\%7Cc%26_tag%3Dx%20y\\%24"
    assert "&" not in criteria
    assert criteria.count("=") == 1


def test_entries_reference_each_other_by_their_full_urls() -> None:
    entries = by_type(bundle_for())
    device = entries["Device"][0]["fullUrl"]
    assessment = entries["RiskAssessment"][0]["fullUrl"]
    issue = entries["DetectedIssue"][0]
    provenance = entries["Provenance"][0]
    audit = entries["AuditEvent"][0]["resource"]

    assert issue["resource"]["author"] == {"reference": device}
    assert issue["resource"]["evidence"] == [{"detail": [{"reference": assessment}]}]
    assert provenance["resource"]["target"] == [
        {"reference": assessment},
        {"reference": issue["fullUrl"]},
    ]
    assert provenance["resource"]["agent"][0]["who"] == {"reference": device}
    written = {entity["what"].get("reference") for entity in audit["entity"]}
    assert {assessment, issue["fullUrl"], provenance["fullUrl"], "Patient/pat-17"} <= written
    full_urls = {entry["fullUrl"] for entry in bundle_for()["entry"]}
    for reference in _references(bundle_for()):
        if reference.startswith("urn:"):
            assert reference in full_urls


def test_what_the_model_asserted_is_labelled_ai_asserted() -> None:
    entries = by_type(bundle_for())

    for kind in ("RiskAssessment", "DetectedIssue", "Provenance"):
        assert AIAST in labels(entries[kind][0]["resource"]), kind


def test_the_provenance_names_the_model_the_inputs_and_the_trace() -> None:
    provenance = by_type(bundle_for(references=("Observation/rr-1", "Observation/hr-1")))[
        "Provenance"
    ][0]["resource"]

    assert provenance["agent"][0]["type"]["coding"][0]["code"] == "author"
    assert provenance["agent"][1]["who"]["identifier"]["value"] == "writeback"
    assert provenance["occurredDateTime"] == "2025-03-04T10:30:15Z"
    assert provenance["recorded"] == "2025-03-04T10:31:00Z"
    sources = [entity["what"] for entity in provenance["entity"]]
    assert {"reference": "Observation/rr-1"} in sources
    assert {"reference": "Observation/hr-1"} in sources
    (trace,) = [what for what in sources if "identifier" in what]
    assert trace["identifier"] == {
        "system": "https://www.w3.org/TR/trace-context/#trace-id",
        "value": TRACE_ID,
    }


def test_without_a_trace_no_trace_is_named() -> None:
    bundle = writeback_bundle(
        recommendation(), trace_id=None, recorded=RECORDED, ehr_base_url=EHR_BASE_URL
    )
    entries = by_type(bundle)
    assert all(
        "identifier" not in e["what"] for e in entries["Provenance"][0]["resource"]["entity"]
    )
    assert all(
        "identifier" not in e["what"] for e in entries["AuditEvent"][0]["resource"]["entity"]
    )


def test_the_device_is_the_model_with_its_version_and_model_card() -> None:
    card = Card(summary="High risk", detail="Look now", source_url=MODEL_CARD)
    device = by_type(bundle_for(cards=[card]))["Device"][0]["resource"]

    assert device["deviceName"] == [{"name": "deterioration-gbm", "type": "model-name"}]
    assert device["version"] == [{"value": "7"}]
    assert device["identifier"] == [{"system": "urn:cdsflow:model", "value": "deterioration-gbm/7"}]
    assert device["note"] == [{"text": f"Model card: {MODEL_CARD}"}]


def test_each_card_becomes_a_detected_issue_with_its_severity_and_detail() -> None:
    cards = [
        Card(
            uuid="card-a",
            summary="High risk",
            detail="Call the team",
            indicator=Indicator.INDICATOR_CRITICAL,
            source_url=MODEL_CARD,
        ),
        Card(
            uuid="card-b",
            summary="Recheck vitals",
            detail="",
            indicator=Indicator.INDICATOR_WARNING,
        ),
    ]
    issues = [entry["resource"] for entry in by_type(bundle_for(cards=cards))["DetectedIssue"]]

    assert [issue["identifier"][0]["value"] for issue in issues] == ["card-a", "card-b"]
    assert [issue["severity"] for issue in issues] == ["high", "moderate"]
    assert issues[0]["patient"] == {"reference": "Patient/pat-17"}
    assert issues[0]["detail"].startswith("High risk\n\nCall the team")
    assert "AI-generated by cdsflow" in issues[0]["detail"]
    assert issues[0]["reference"] == MODEL_CARD
    assert "reference" not in issues[1]


def test_a_low_risk_writes_the_assessment_but_no_card() -> None:
    entries = by_type(bundle_for(band="low", value=0.05))

    assert "DetectedIssue" not in entries
    (assessment,) = entries["RiskAssessment"]
    provenance = entries["Provenance"][0]["resource"]
    assert provenance["target"] == [{"reference": assessment["fullUrl"]}]


def test_the_audit_event_records_a_create_disclosed_to_the_ehr() -> None:
    audit = by_type(bundle_for())["AuditEvent"][0]["resource"]

    assert audit["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientCreate"
    ]
    assert (audit["type"]["code"], audit["subtype"][0]["code"], audit["action"]) == (
        "rest",
        "create",
        "C",
    )
    assert audit["outcome"] == "0"
    roles = [agent["type"]["coding"][0]["code"] for agent in audit["agent"]]
    assert roles == ["110153", "110152", "AUT"]
    assert audit["agent"][1]["network"] == {"address": EHR_BASE_URL, "type": "5"}
    patient = audit["entity"][0]
    assert patient["what"] == {"reference": "Patient/pat-17"}
    assert patient["role"]["code"] == "1"
    request_id = [e for e in audit["entity"] if e["type"]["code"] == "XrequestId"]
    assert request_id[0]["what"]["identifier"]["value"] == TRACE_ID


@pytest.mark.parametrize(
    ("statuses", "created"),
    [
        (["201 Created", "201 Created"], 2),
        (["200 OK", "200 OK"], 0),
        (["200 OK", "201 Created"], 1),
    ],
)
def test_created_entries_counts_what_the_ehr_created(statuses: list[str], created: int) -> None:
    response = {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [{"response": {"status": status}} for status in statuses],
    }
    assert created_entries(response) == created


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def test_the_readmes_example_bundle_is_what_the_builder_writes() -> None:
    example = Path(__file__).parents[3] / "services/writeback/example-writeback-bundle.json"
    card = Card(
        uuid="6b9f0c1e-5d2a-4c1b-9e57-0f3c2a8d4e11",
        summary="High risk of clinical deterioration (score 0.83)",
        detail="Respiratory rate 28 /min at 10:30Z.",
        indicator=Indicator.INDICATOR_CRITICAL,
        source_label="cdsflow deterioration model",
        source_url="https://models.example.org/deterioration-gbm/7",
    )
    bundle = writeback_bundle(
        recommendation(
            recommendation_id="rec-7f3a",
            patient_id="42",
            references=("Observation/rr-1",),
            cards=[card],
        ),
        trace_id=TRACE_ID,
        recorded=datetime(2025, 3, 4, 10, 30, 16, tzinfo=UTC),
        ehr_base_url="https://ehr.example.org/fhir/r4",
    )
    assert bundle == json.loads(example.read_text())
