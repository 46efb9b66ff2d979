"""Both shipped adapters end to end on the real parts (EHR -> listener -> reasoner -> Triton ->
writeback -> card and write-back), and shadow beside active: the shadow version's
recommendation is published for every event the active one answers, and is never shown or
written into the EHR."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from cdsflow.contracts import RECOMMENDATIONS, Mode, Recommendation
from cdsflow.fhir import EhrClient
from cdsflow.runtime.scenario import patient_view_cards
from cdsflow.runtime.stack import CDS_SERVICE_ID, Stack
from tests.e2e.conftest import SHADOW_VERSION
from tests.integration.test_listener_adapter_channels import egfr, metformin_order
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

MEDICATION_SERVICE = "cdsflow-medication-safety"
RECOMMENDATION_IDS = "urn:cdsflow:recommendation"


async def recommendations_for(bootstrap: str, patient_reference: str) -> list[Recommendation]:
    """Every recommendation published so far about the patient (the topic read from the start)."""
    consumer = AIOKafkaConsumer(
        RECOMMENDATIONS, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        found: list[Recommendation] = []
        while batch := await consumer.getmany(timeout_ms=1000):
            for records in batch.values():
                for record in records:
                    recommendation = Recommendation.FromString(record.value or b"")
                    if recommendation.patient_reference == patient_reference:
                        found.append(recommendation)
        return found
    finally:
        await consumer.stop()


async def written_back_ids(ehr: EhrClient, patient_reference: str) -> set[str]:
    """The recommendation ids of the RiskAssessments written back for the patient."""
    found = await ehr.search("RiskAssessment", [("subject", patient_reference)])
    return {
        identifier["value"]
        for resource in found
        for identifier in resource.get("identifier", [])
        if identifier.get("system") == RECOMMENDATION_IDS
    }


@pytest.fixture(scope="module")
async def metformin_patient(stack: Stack) -> dict[str, Any]:
    """A patient on metformin whose eGFR falls to 24: the medication adapter's stop card."""
    async with httpx.AsyncClient(base_url=stack.endpoints["ehr"], timeout=15) as fhir:
        headers = {"Content-Type": "application/fhir+json"}
        patient = (
            await fhir.post(
                "/Patient",
                json={"resourceType": "Patient", "birthDate": "1950-03-01"},
                headers=headers,
            )
        ).json()
        order = await fhir.post(
            "/MedicationRequest", json=metformin_order(patient["id"], "active"), headers=headers
        )
        assert order.status_code == 201, order.text
        lab = await fhir.post("/Observation", json=egfr(patient["id"], 24.0), headers=headers)
        assert lab.status_code == 201, lab.text
    return {"patient_id": patient["id"], "order_id": order.json()["id"]}


async def test_metformin_with_a_low_egfr_gets_a_card_to_stop_it_and_a_write_back(
    stack: Stack, metformin_patient: dict[str, Any]
) -> None:
    patient_id = metformin_patient["patient_id"]
    reference = f"Patient/{patient_id}"
    async with httpx.AsyncClient(timeout=15) as http:
        ehr = EhrClient(stack.endpoints["ehr"], http)

        async def stop_card() -> dict[str, Any] | None:
            cards = await patient_view_cards(
                http,
                stack.endpoints["cds_services"],
                MEDICATION_SERVICE,
                patient_id,
                ehr.base_url,
                stack.hook_signing_key,
            )
            return next((card for card in cards if card.get("suggestions")), None)

        card = await eventually(stop_card, timeout_s=90, what="the stop-metformin card")
        assert card["indicator"] == "critical"
        [action] = card["suggestions"][0]["actions"]
        assert action["type"] == "delete"
        assert action["resourceId"] == [f"MedicationRequest/{metformin_patient['order_id']}"]
        assert card["extension"]["org.cdsflow.recommendation"]["traceId"]

        recommendations = await recommendations_for(stack.endpoints["broker"], reference)
        medication = [r for r in recommendations if r.adapter_id == "medication-safety"]
        assert medication
        assert {r.mode for r in medication} == {Mode.MODE_ACTIVE}
        shown = card["extension"]["org.cdsflow.recommendation"]["recommendationId"]
        assert shown in {r.recommendation_id for r in medication}

        written = await eventually(
            lambda: _nonempty(written_back_ids(ehr, reference)),
            timeout_s=60,
            what="the medication recommendation's write-back",
        )
        assert shown in written


async def test_shadow_beside_active_is_published_never_shown_never_written(
    stack: Stack, metformin_patient: dict[str, Any]
) -> None:
    """A vital sign for the metformin patient: the deterioration adapter answers with version 1
    (active) and version 2 (shadow) for the same event."""
    patient_id = metformin_patient["patient_id"]
    reference = f"Patient/{patient_id}"
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "9279-1"}]},
        "subject": {"reference": reference},
        "effectiveDateTime": "2026-11-29T12:00:00+00:00",
        "valueQuantity": {
            "value": 31,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    async with httpx.AsyncClient(timeout=15) as http:
        ehr = EhrClient(stack.endpoints["ehr"], http)
        written = await http.post(
            f"{ehr.base_url}/Observation",
            json=observation,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert written.status_code == 201, written.text

        async def both_versions() -> list[Recommendation] | None:
            found = await recommendations_for(stack.endpoints["broker"], reference)
            ours = [r for r in found if r.adapter_id == "deterioration-risk"]
            return ours if {r.model.version for r in ours} >= {"1", SHADOW_VERSION} else None

        answered = await eventually(both_versions, timeout_s=90, what="both versions' answers")
        by_version = {r.model.version: r for r in answered}
        active, shadow = by_version["1"], by_version[SHADOW_VERSION]
        assert (active.mode, shadow.mode) == (Mode.MODE_ACTIVE, Mode.MODE_SHADOW)
        assert active.event_id == shadow.event_id
        assert active.recommendation_id != shadow.recommendation_id

        # the active one is written back; the shadow one never
        await eventually(
            lambda: _containing(written_back_ids(ehr, reference), active.recommendation_id),
            timeout_s=60,
            what="the active version's write-back",
        )
        assert shadow.recommendation_id not in await written_back_ids(ehr, reference)
        cards = await patient_view_cards(
            http,
            stack.endpoints["cds_services"],
            CDS_SERVICE_ID,
            patient_id,
            ehr.base_url,
            stack.hook_signing_key,
        )
        shown = {
            card["extension"]["org.cdsflow.recommendation"]["recommendationId"] for card in cards
        }
        assert shadow.recommendation_id not in shown


async def _nonempty(ids: Any) -> set[str] | None:
    found: set[str] = await ids
    return found or None


async def _containing(ids: Any, wanted: str) -> bool:
    found: set[str] = await ids
    return wanted in found
