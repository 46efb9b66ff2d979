"""The reasoner consumes in batches on the real parts: many patients at once, each patient's
events in order, and Triton's dynamic batcher merging the concurrent requests."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdsflow.contracts import ClinicalEvent, EventSource, Recommendation
from cdsflow.fhir import EhrClient
from cdsflow.telemetry import Telemetry
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.integration.test_reasoner import (
    RunningReasoner,
    publish,
    read_until,
    reasoner_settings,
    serve_reasoner,
    vital_sign,
)
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

PATIENTS = 40
EVENTS_PER_PATIENT = 4


@pytest.fixture
async def reasoner(
    kafka: KafkaEndpoint, triton: TritonEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> AsyncIterator[RunningReasoner]:
    recording: tuple[Telemetry, InMemorySpanExporter]
    with recording_telemetry("reasoner", pseudonym_key) as recording:
        telemetry, spans = recording
        settings = reasoner_settings(kafka, triton.grpc_url, ehr, unique)
        async with serve_reasoner(settings, telemetry, spans) as running:
            yield running


async def triton_counts(triton: TritonEndpoint) -> tuple[int, int]:
    """(inferences, executions) of the model so far, from Triton's statistics extension."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{triton.http_url}/v2/models/deterioration_risk/stats")
    answer.raise_for_status()
    stats = answer.json()["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def observation_event(
    patient: str,
    code: str,
    value: float,
    effective: datetime,
    reasoner: RunningReasoner,
    ehr_url: str,
) -> ClinicalEvent:
    """A ClinicalEvent about a new vital-sign Observation (in /min) that only Kafka holds."""
    observation: dict[str, Any] = vital_sign(patient, code, value, "/min", effective)
    observation["id"] = f"obs-{uuid.uuid4().hex}"
    event = ClinicalEvent(
        event_id=uuid.uuid4().hex,
        resource_type="Observation",
        resource_id=observation["id"],
        resource_json=json.dumps(observation).encode(),
        patient_key=reasoner.keyer.patient_key(patient),
        patient_reference=patient,
        source=EventSource(ehr_base_url=ehr_url),
    )
    event.occurred_at.FromDatetime(effective)
    return event


def heart_rate_event(
    patient: str, value: float, effective: datetime, reasoner: RunningReasoner, ehr_url: str
) -> ClinicalEvent:
    return observation_event(patient, "8867-4", value, effective, reasoner, ehr_url)


async def test_many_patients_at_once_each_in_order_and_triton_batches_them(
    reasoner: RunningReasoner, ehr: EhrEndpoint, triton: TritonEndpoint
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        client = EhrClient(ehr.base_url, http)
        patients = [
            f"Patient/{(await client.create({'resourceType': 'Patient'}))['id']}"
            for _ in range(PATIENTS)
        ]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=EVENTS_PER_PATIENT)
    # round by round, so that one batch holds many patients and each patient several events
    events = [
        heart_rate_event(patient, 60 + 10 * n, start + timedelta(minutes=n), reasoner, ehr.base_url)
        for n in range(EVENTS_PER_PATIENT)
        for patient in patients
    ]
    inferences_before, executions_before = await triton_counts(triton)
    await publish(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.clinical_events,
        *((event.SerializeToString(), event.patient_key.encode()) for event in events),
    )

    expected = {event.event_id for event in events}
    records = await read_until(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.recommendations,
        lambda got: expected <= {Recommendation.FromString(r.value).event_id for r in got},
        timeout_s=90,
    )
    answered = [Recommendation.FromString(record.value) for record in records]
    assert len(answered) == len(events)  # each once
    published_order = {event.event_id: index for index, event in enumerate(events)}
    for patient in patients:
        mine = [r.event_id for r in answered if r.patient_reference == patient]
        assert mine == sorted(mine, key=published_order.__getitem__), "one patient out of order"
        # each event's own heart rate is its basis: as of the event, never a later one
        rates = [
            next(i.value for i in r.basis.inputs if i.name == "heart_rate")
            for r in answered
            if r.patient_reference == patient
        ]
        assert rates == [60 + 10 * n for n in range(EVENTS_PER_PATIENT)]

    inferences_after, executions_after = await triton_counts(triton)
    inferences = inferences_after - inferences_before
    executions = executions_after - executions_before
    assert inferences >= len(events)
    # the concurrent requests were merged: fewer model executions than inferences
    assert executions < inferences
    # heart rates of 60-90 /min, nothing else observed: every recommendation is low, none lost
    recommended = "cdsflow_reasoner_recommendations_total"
    low = await reasoner.metric(
        recommended,
        at_least=len(events),
        adapter="deterioration-risk",
        version="1",
        band="low",
        mode="active",
    )
    assert low == len(events)
