"""`cdsflow up --with-ehr` given the adapters it runs: the embedded EHR gets a topic per
criteria they need, the listener's Subscriptions on them are active before `up` returns, and
an active metformin order written into the EHR reaches the clinical-events topic."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from cdsflow.contracts import ClinicalEvent
from cdsflow.runtime.stack import Stack, StackOptions
from tests.conftest import MODEL_REPOSITORY, REPO_ROOT

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


@pytest.mark.timeout(400)
def test_up_subscribes_to_what_the_adapters_need(tmp_path: Path) -> None:
    options = StackOptions(
        work_dir=tmp_path,
        model_repository=MODEL_REPOSITORY,
        with_ehr=True,
        adapters=(REPO_ROOT / "adapters",),
    )
    stack = Stack(options)
    try:
        endpoints = stack.start()
        listener = endpoints["listener"].removesuffix("/fhir/notifications/rest-hook")
        states: list[dict[str, Any]] = httpx.get(f"{listener}/subscriptions").json()
        assert sorted(state["topic"] for state in states) == sorted(
            topic.url for topic in stack.listener_channels.ehr_topics
        )
        assert len(states) == 3
        assert {state["status"] for state in states} == {"active"}

        ehr = endpoints["ehr"]
        patient = httpx.post(f"{ehr}/Patient", json={"resourceType": "Patient"}, headers=FHIR)
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
        written = httpx.post(f"{ehr}/MedicationRequest", json=order, headers=FHIR)
        assert written.status_code == 201, written.text
        event = asyncio.run(_clinical_event_about(endpoints["broker"], written.json()["id"]))
        assert event.resource_type == "MedicationRequest"
    finally:
        stack.stop()
