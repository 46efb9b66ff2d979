"""`cdsflow up --with-ehr` given the adapters it runs: the embedded EHR gets a topic per
criteria they need, the listener's Subscriptions on them are active before `up` returns, and
an active metformin order written into the EHR reaches the clinical-events topic.

It runs on the tier's stack (`tests/e2e/conftest.py`): the shipped adapters with their versions
promoted, whose criteria (what the channels follow) are the shipped ones."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from cdsflow.contracts import ClinicalEvent
from cdsflow.runtime.stack import Stack

pytestmark = pytest.mark.e2e

CLINICAL_EVENTS = "cdsflow.clinical-events.v1"
FHIR = {"Content-Type": "application/fhir+json"}


async def _clinical_event_about(bootstrap: str, resource_id: str) -> ClinicalEvent:
    consumer = AIOKafkaConsumer(
        CLINICAL_EVENTS,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while True:
                event = ClinicalEvent.FromString((await consumer.getone()).value)
                if event.resource_id == resource_id:
                    return event
    finally:
        await consumer.stop()


# run alone, this test starts the tier's stack: its start counts against the timeout
@pytest.mark.timeout(400)
async def test_up_subscribes_to_what_the_adapters_need(stack: Stack) -> None:
    endpoints = stack.endpoints
    listener = endpoints["listener"].removesuffix("/fhir/notifications/rest-hook")
    async with httpx.AsyncClient(timeout=15) as http:
        states: list[dict[str, Any]] = (await http.get(f"{listener}/subscriptions")).json()
        assert sorted(state["topic"] for state in states) == sorted(
            topic.url for topic in stack.listener_channels.ehr_topics
        )
        assert len(states) == 3
        assert {state["status"] for state in states} == {"active"}

        ehr = endpoints["ehr"]
        patient = await http.post(f"{ehr}/Patient", json={"resourceType": "Patient"}, headers=FHIR)
        order = {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "861007"}
                ]
            },
            "subject": {"reference": f"Patient/{patient.json()['id']}"},
        }
        written = await http.post(f"{ehr}/MedicationRequest", json=order, headers=FHIR)
        assert written.status_code == 201, written.text
    event = await _clinical_event_about(endpoints["broker"], written.json()["id"])
    assert event.resource_type == "MedicationRequest"
