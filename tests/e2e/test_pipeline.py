"""The demo story through the real pipeline: EHR -> listener -> Kafka -> reasoner -> Triton ->
Kafka -> writeback -> CDS Hooks card and FHIR write-back, with one trace."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cdsflow.fhir import EhrClient
from cdsflow.runtime.scenario import (
    PlayedPatient,
    patient_view_cards,
    pipeline_traces,
    wait_for_risk_assessment,
    write_story,
)
from cdsflow.runtime.stack import CDS_SERVICE_ID, Stack
from cdsflow.runtime.story import STORY
from cdsflow.runtime.trace_collector import CollectedSpan
from cdsflow.telemetry import PatientKeyer
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e
ALERTING = {"warning", "critical"}


@pytest.fixture(scope="module")
async def played(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=15) as http:
        ehr = EhrClient(stack.endpoints["ehr"], http)
        patients = await write_story(ehr)
        assessments = {
            label: await wait_for_risk_assessment(ehr, patient, timeout_s=90)
            for label, patient in patients.items()
        }
        cards = {
            label: await patient_view_cards(
                http,
                stack.endpoints["cds_services"],
                CDS_SERVICE_ID,
                patient.patient_id,
                ehr.base_url,
                stack.hook_signing_key,
            )
            for label, patient in patients.items()
        }
    return {"patients": patients, "assessments": assessments, "cards": cards}


async def test_deteriorating_patient_gets_an_alerting_card(played: dict[str, Any]) -> None:
    cards = played["cards"]["deteriorating"]
    assert {card["indicator"] for card in cards} & ALERTING, cards
    for card in cards:
        assert card["summary"]
        assert len(card["summary"]) < 140
        assert card["source"]["label"]


async def test_stable_patient_gets_no_alerting_card(played: dict[str, Any]) -> None:
    assert not {card["indicator"] for card in played["cards"]["stable"]} & ALERTING


async def test_write_back_is_marked_ai_generated_with_its_basis(played: dict[str, Any]) -> None:
    patient: PlayedPatient = played["patients"]["deteriorating"]
    assessment = played["assessments"]["deteriorating"]
    assert assessment["resourceType"] == "RiskAssessment"
    assert assessment["subject"]["reference"] == patient.reference
    labels = {(c.get("system"), c.get("code")) for c in assessment["meta"]["security"]}
    assert ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST") in labels
    identifiers = {i["system"] for i in assessment["identifier"]}
    assert "urn:cdsflow:recommendation" in identifiers
    basis = {ref["reference"] for ref in assessment["basis"]}
    assert patient.observation_references[-1] in basis
    stable = played["assessments"]["stable"]["prediction"][0]["probabilityDecimal"]
    assert assessment["prediction"][0]["probabilityDecimal"] > stable


async def test_one_trace_from_listener_through_triton_to_writeback(
    stack: Stack, played: dict[str, Any]
) -> None:
    assert stack.collector is not None
    collector = stack.collector
    patient: PlayedPatient = played["patients"]["deteriorating"]
    key = PatientKeyer(stack.options.pseudonym_key).patient_key(patient.reference)

    async def complete_trace() -> list[CollectedSpan] | None:
        for trace in pipeline_traces(collector, key):
            services = {span.service for span in trace}
            if {"listener", "reasoner", "writeback"} <= services and any(
                "triton" in service for service in services
            ):
                return trace
        return None

    try:
        trace = await eventually(complete_trace, timeout_s=60, what="a complete pipeline trace")
    except AssertionError as exc:
        seen = [sorted({span.service for span in t}) for t in pipeline_traces(collector, key)]
        triton = sum("triton" in span.service for span in collector.spans())
        raise AssertionError(f"{exc}; traces seen: {seen}; Triton spans in all: {triton}") from exc
    assert len({span.trace_id for span in trace}) == 1
    by_id = {span.span_id: span for span in trace}
    infer = [s for s in trace if "reasoner" in s.service and s.attributes.get("rpc.method")]
    assert infer, "the reasoner's Triton client span is missing"
    triton_spans = [s for s in trace if "triton" in s.service]
    # Triton's own spans hang under the reasoner's client span (traceparent over gRPC)
    roots = [s for s in triton_spans if s.parent_span_id not in {t.span_id for t in triton_spans}]
    assert roots
    assert all(by_id[r.parent_span_id] in infer for r in roots)


async def test_no_patient_data_in_any_span(stack: Stack, played: dict[str, Any]) -> None:
    assert stack.collector is not None
    patients: dict[str, PlayedPatient] = played["patients"]
    forbidden = [p.patient_id for p in patients.values()]
    forbidden += [f"Patient/{p.patient_id}" for p in patients.values()]
    forbidden += [story.family for story in STORY] + [story.birth_date for story in STORY]
    for span in stack.collector.spans():
        text = f"{span.name} {span.attributes}"
        leaked = [value for value in forbidden if value in text]
        assert not leaked, f"{span.service}/{span.name} carries patient data"
