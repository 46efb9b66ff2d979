"""The channels derived from the shipped adapters, on a real SEKMET as `cdsflow up --with-ehr`
makes them: cdsflow defines one SubscriptionTopic per criteria there, the listener subscribes
to each, and what the adapters need — an active metformin order, an eGFR, a vital sign —
reaches the clinical-events topic, once each; what none of them needs does not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.listener.settings import Settings
from cdsflow.models import load_adapter_set
from cdsflow.runtime.adapter_channels import adapter_channels
from cdsflow.runtime.ehr_topics import define_topic
from cdsflow.runtime.parts import start_ehr
from cdsflow.runtime.story import vital_sign_observation
from tests.conftest import REPO_ROOT, EhrEndpoint, KafkaEndpoint
from tests.integration.test_listener import consume_clinical_events, listener_settings, records_on
from tests.integration.test_listener_subscriptions import FHIR, managing_listener, shown
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LABORATORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
        }
    ]
}


@pytest.fixture
def own_ehr(tmp_path: Path) -> Iterator[EhrEndpoint]:
    """A SEKMET of this test's own: the topics and Subscriptions it gets stay with it."""
    part = start_ehr(tmp_path)
    try:
        yield EhrEndpoint(base_url=part.endpoints["ehr"])
    finally:
        part.stop()


def metformin_order(patient_id: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "861007"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def egfr(patient_id: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [LABORATORY],
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": datetime.now(UTC).isoformat(timespec="seconds"),
        "valueQuantity": {
            "value": value,
            "unit": "mL/min/1.73m2",
            "system": "http://unitsofmeasure.org",
            "code": "mL/min/{1.73_m2}",
        },
    }


async def test_what_the_adapters_need_reaches_the_clinical_events_topic(
    kafka: KafkaEndpoint, own_ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> None:
    derived = adapter_channels(load_adapter_set([REPO_ROOT / "adapters"]), embedded_ehr=True)
    for topic in derived.ehr_topics:
        await asyncio.to_thread(define_topic, own_ehr.base_url, topic)
    channels = [dict(channel) for channel in derived.channels]

    def settings_for(endpoint: str) -> Settings:
        return listener_settings(
            kafka.bootstrap,
            unique,
            ehr_base_url=own_ehr.base_url,
            channels=channels,
            notification_endpoint=endpoint,
            subscription_check_interval_s=0.5,
        )

    async with (
        httpx.AsyncClient(base_url=own_ehr.base_url, headers=FHIR, timeout=30) as fhir,
        managing_listener(settings_for, pseudonym_key) as (url, settings),
    ):

        async def all_active() -> dict[str, dict[str, Any]] | None:
            states = await shown(url)
            return states if all(s["status"] == "active" for s in states.values()) else None

        states = await eventually(all_active, what="every derived channel's Subscription active")
        assert sorted(states) == sorted(channel["name"] for channel in channels)
        assert {state["topic"] for state in states.values()} == {
            topic.url for topic in derived.ehr_topics
        }

        patient = (await fhir.post("/Patient", json={"resourceType": "Patient"})).json()
        # needed by no adapter: a draft order (draft orders come with order-select/-sign hooks)
        draft = await fhir.post("/MedicationRequest", json=metformin_order(patient["id"], "draft"))
        assert draft.status_code == 201, draft.text
        written = {}
        for resource in (
            metformin_order(patient["id"], "active"),
            egfr(patient["id"], 25.0),
            vital_sign_observation(
                f"Patient/{patient['id']}", datetime.now(UTC), "9279-1", value=24
            ),
        ):
            answer = await fhir.post(f"/{resource['resourceType']}", json=resource)
            assert answer.status_code == 201, answer.text
            written[answer.json()["id"]] = resource["resourceType"]

        records = await consume_clinical_events(
            kafka.bootstrap, settings.clinical_events_topic, f"test-{unique}", count=3
        )
        events = [ClinicalEvent.FromString(record.value) for record in records]
        assert {event.resource_id: event.resource_type for event in events} == written
        [order] = [event for event in events if event.resource_type == "MedicationRequest"]
        assert order.patient_reference == f"Patient/{patient['id']}"
        assert order.source.kind == NotificationKind.NOTIFICATION_KIND_TOPIC_FULL_RESOURCE
        for name, state in (await shown(url)).items():
            assert state["status"] == "active", name
    # each once: no two channels carried the same change, and the draft order none
    assert await records_on(kafka.bootstrap, settings.clinical_events_topic) == 3
