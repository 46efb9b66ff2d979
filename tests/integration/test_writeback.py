"""The writeback against the real parts: Tansu (Kafka) and SEKMET (the EHR).

Each test runs the writeback in-process under uvicorn on its own topic and consumer group,
publishes Recommendations the way the reasoner does, and reads the outcome where a clinician
or the EHR would see it: the CDS Hooks answer and the EHR's RiskAssessments.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdsflow.contracts import Mode, Recommendation
from cdsflow.runtime.parts import start_broker
from cdsflow.runtime.processes import free_port
from cdsflow.telemetry import Telemetry
from cdsflow.writeback.app import create_app
from cdsflow.writeback.settings import Settings
from tests.conftest import EhrEndpoint, KafkaEndpoint
from tests.support.asgi import serve_app
from tests.support.polling import eventually
from tests.support.recommendations import keyed_recommendation
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

SERVICE_URL = "/cds-services/cdsflow-deterioration"
RECOMMENDATION_TAG = "urn:cdsflow:recommendation"
FHIR_JSON = "application/fhir+json"


@dataclass
class RunningWriteback:
    base_url: str
    settings: Settings
    telemetry: Telemetry
    spans: InMemorySpanExporter
    producer: AIOKafkaProducer | None = None  # started on the first publish

    def writebacks(self, outcome: str) -> float:
        value = self.telemetry.metrics.registry.get_sample_value(
            "cdsflow_writeback_risk_assessments_total", {"outcome": outcome}
        )
        return value or 0.0

    async def wait_for_writebacks(self, outcome: str, count: int) -> None:
        async def counted() -> bool:
            return self.writebacks(outcome) >= count

        await eventually(counted, timeout_s=60, what=f"{count} write-back(s) {outcome}")

    async def publish(self, recommendation: Recommendation, traceparent: str | None = None) -> None:
        headers = [("traceparent", traceparent.encode())] if traceparent else []
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=False,
            )
            await producer.start()
            self.producer = producer
        await self.producer.send_and_wait(
            self.settings.recommendations_topic,
            recommendation.SerializeToString(),
            key=recommendation.patient_key.encode(),
            headers=headers,
        )

    async def cards(self, http: httpx.AsyncClient, patient_id: str) -> list[dict[str, Any]]:
        response = await http.post(
            f"{self.base_url}{SERVICE_URL}",
            json={
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "context": {"userId": "Practitioner/integration", "patientId": patient_id},
            },
        )
        assert response.status_code == 200, response.text
        cards: list[dict[str, Any]] = response.json()["cards"]
        return cards


@contextlib.asynccontextmanager
async def started_writeback(
    kafka: KafkaEndpoint,
    ehr_base_url: str,
    unique: str,
    pseudonym_key: str,
    **overrides: Any,
) -> AsyncIterator[RunningWriteback]:
    """A writeback on this test's topic; `overrides` are further `Settings` fields (e.g. a
    second instance's `consumer_group`, the retry and breaker settings)."""
    fields: dict[str, Any] = {
        "kafka_bootstrap": kafka.bootstrap,
        "kafka_idempotence": False,
        "ehr_base_url": ehr_base_url,
        "recommendations_topic": f"test.recommendations.{unique}",
        "feedback_topic": f"test.feedback.{unique}",
        "consumer_group": f"test-writeback-{unique}",
        "writeback_retry_pause_s": 0.1,
        "ehr_timeout_s": 5,
        # quick retries, so that a test of an outage ends in seconds
        "writeback_max_attempts": 3,
        "writeback_backoff_initial_s": 0.01,
        "writeback_backoff_max_s": 0.05,
        "ehr_circuit_failure_threshold": 3,
        "ehr_circuit_open_s": 0.5,
        # hook calls here are about cards; authenticated ones: test_writeback_client_auth.py
        "hooks_auth": "off",
    }
    settings = Settings(**{**fields, **overrides})
    running: RunningWriteback | None = None
    with recording_telemetry("writeback", pseudonym_key) as (telemetry, spans):
        try:
            async with serve_app(create_app(settings, telemetry=telemetry)) as base_url:
                running = RunningWriteback(base_url, settings, telemetry, spans)
                yield running
        finally:
            if running is not None and running.producer is not None:
                await running.producer.stop()


@pytest.fixture
async def writeback(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str
) -> AsyncIterator[RunningWriteback]:
    async with started_writeback(kafka, ehr.base_url, unique, pseudonym_key) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def create_patient(http: httpx.AsyncClient, ehr: EhrEndpoint) -> str:
    response = await http.post(
        f"{ehr.base_url}/Patient",
        json={"resourceType": "Patient", "active": True},
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
    )
    assert response.status_code == 201, response.text
    patient_id: str = response.json()["id"]
    return patient_id


def recommendation_for(
    running: RunningWriteback, ehr_base_url: str, patient_id: str, **fields: Any
) -> Recommendation:
    """An active recommendation keyed as `running` keys patients; `fields`: `mode`, `band`,
    `value` (see `keyed_recommendation`)."""
    return keyed_recommendation(running.telemetry.patient_keyer, ehr_base_url, patient_id, **fields)


async def risk_assessments(
    http: httpx.AsyncClient, ehr: EhrEndpoint, recommendation_id: str
) -> list[dict[str, Any]]:
    response = await http.get(
        f"{ehr.base_url}/RiskAssessment",
        params={"_tag": f"{RECOMMENDATION_TAG}|{recommendation_id}"},
        headers={"Accept": FHIR_JSON},
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    return [
        entry["resource"]
        for entry in bundle.get("entry", [])
        if entry.get("search", {}).get("mode") == "match"
    ]


def spans_of(spans: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.kind is kind]


async def test_an_active_recommendation_becomes_a_card_and_one_risk_assessment(
    writeback: RunningWriteback, ehr: EhrEndpoint, http: httpx.AsyncClient
) -> None:
    patient_id = await create_patient(http, ehr)
    recommendation = recommendation_for(writeback, ehr.base_url, patient_id)
    trace_id, parent_id = secrets.randbits(128), secrets.randbits(64)
    traceparent = f"00-{trace_id:032x}-{parent_id:016x}-01"

    await writeback.publish(recommendation, traceparent)
    await writeback.publish(recommendation, traceparent)  # delivered twice

    async def shown() -> list[dict[str, Any]] | None:
        return await writeback.cards(http, patient_id) or None

    (card,) = await eventually(shown, timeout_s=60, what="the card")
    assert card["indicator"] == "critical"
    await writeback.wait_for_writebacks("written", 2)  # both deliveries

    (assessment,) = await risk_assessments(http, ehr, recommendation.recommendation_id)
    assert assessment["subject"]["reference"] == f"Patient/{patient_id}"
    assert assessment["status"] == "final"
    assert assessment["prediction"][0]["probabilityDecimal"] == pytest.approx(0.87)
    assert assessment["identifier"] == [
        {"system": RECOMMENDATION_TAG, "value": recommendation.recommendation_id}
    ]
    assert {"AIAST"} <= {label["code"] for label in assessment["meta"]["security"]}

    # one trace: producer -> consumer span -> the FHIR write's client span; the hook links to it
    def consumer_spans() -> list[ReadableSpan]:
        return [
            span
            for span in spans_of(writeback.spans, SpanKind.CONSUMER)
            if span.attributes
            and span.attributes.get("cdsflow.recommendation_id") == recommendation.recommendation_id
        ]

    async def both_consumer_spans_ended() -> list[ReadableSpan] | None:
        # a consumer span ends just after its handler counted the write-back
        return consumer_spans() if len(consumer_spans()) == 2 else None

    consumers = await eventually(both_consumer_spans_ended, timeout_s=10, what="consumer spans")
    for consumer in consumers:
        assert consumer.context.trace_id == trace_id
        assert consumer.parent is not None
        assert consumer.parent.span_id == parent_id
    writes = [
        span
        for span in spans_of(writeback.spans, SpanKind.CLIENT)
        if span.parent is not None
        and span.parent.span_id in {consumer.context.span_id for consumer in consumers}
    ]
    assert len(writes) == 2
    assert all(span.context.trace_id == trace_id for span in writes)

    async def hook_calls_with_the_card() -> list[ReadableSpan] | None:
        # a server span ends just after its response was sent
        calls = [
            span
            for span in spans_of(writeback.spans, SpanKind.SERVER)
            if span.attributes and span.attributes.get("cdsflow.card_count") == 1
        ]
        return calls or None

    hook_calls = await eventually(hook_calls_with_the_card, timeout_s=10, what="hook spans")
    # made by cdsflow.service.server_spans (the instrumentation names it `http.method`)
    assert hook_calls[-1].name == "POST /cds-services/{service_id}"
    assert (hook_calls[-1].attributes or {})["http.request.method"] == "POST"
    # the card links to the span that published the recommendation (the same on every replica)
    assert [(link.context.trace_id, link.context.span_id) for link in hook_calls[-1].links] == [
        (trace_id, parent_id)
    ]
    for span in writeback.spans.get_finished_spans():
        assert patient_id not in f"{span.name} {dict(span.attributes or {})}"


async def test_the_end_to_end_latency_is_measured_from_when_the_listener_received_the_change(
    writeback: RunningWriteback, ehr: EhrEndpoint, http: httpx.AsyncClient
) -> None:
    registry = writeback.telemetry.metrics.registry
    adapter = {"adapter": "deterioration-risk"}  # a message without adapter_id: the legacy one

    def observed(name: str) -> tuple[float, float]:
        count = registry.get_sample_value(f"{name}_count", adapter) or 0.0
        return count, registry.get_sample_value(f"{name}_sum", adapter) or 0.0

    to_write = "cdsflow_writeback_event_to_ehr_write_seconds"
    to_card = "cdsflow_writeback_event_to_card_seconds"
    before = {name: observed(name) for name in (to_write, to_card)}
    patient_id = await create_patient(http, ehr)
    recommendation = recommendation_for(writeback, ehr.base_url, patient_id)
    received = datetime.now(UTC) - timedelta(seconds=3)
    recommendation.event_received_at.FromDatetime(received)
    written_before = writeback.writebacks("written")

    await writeback.publish(recommendation)
    await writeback.publish(recommendation)  # a redelivery is no second first write
    await writeback.wait_for_writebacks("written", int(written_before) + 2)

    async def card_seen() -> bool:
        return observed(to_card)[0] > before[to_card][0]

    await eventually(card_seen, timeout_s=30, what="the card's end-to-end latency")
    count, total = observed(to_write)
    assert count == before[to_write][0] + 1
    assert total - before[to_write][1] >= 3.0  # at least the 3 s since it was received
    card_count, card_total = observed(to_card)
    assert card_total - before[to_card][1] >= 3.0 * (card_count - before[to_card][0])


async def test_a_shadow_recommendation_is_neither_shown_nor_written_back(
    writeback: RunningWriteback, ehr: EhrEndpoint, http: httpx.AsyncClient
) -> None:
    patient_id = await create_patient(http, ehr)
    shadow = recommendation_for(writeback, ehr.base_url, patient_id, mode=Mode.MODE_SHADOW)

    await writeback.publish(shadow)
    await writeback.wait_for_writebacks("skipped_shadow", 1)

    async def read_back_holding_it() -> bool:
        # the card state has read the shadow recommendation: "no card" is now an answer
        held = writeback.telemetry.metrics.registry.get_sample_value(
            "cdsflow_writeback_card_state_patients"
        )
        return held == 1 and (await http.get(f"{writeback.base_url}/readyz")).status_code == 200

    await eventually(read_back_holding_it, timeout_s=60, what="the shadow recommendation held")
    assert await writeback.cards(http, patient_id) == []
    assert await risk_assessments(http, ehr, shadow.recommendation_id) == []
    assert writeback.writebacks("written") == 0


async def test_invalid_and_foreign_recommendations_are_dead_lettered_and_not_shown(
    writeback: RunningWriteback, kafka: KafkaEndpoint, http: httpx.AsyncClient
) -> None:
    broken = Recommendation(recommendation_id="rec-broken", patient_key="some-key")
    foreign = recommendation_for(writeback, "http://other-ehr.example.org/fhir", "pat-elsewhere")

    await writeback.publish(broken)
    await writeback.publish(foreign)
    await writeback.wait_for_writebacks("dead_lettered", 2)

    consumer = AIOKafkaConsumer(
        f"{writeback.settings.recommendations_topic}.dlq",
        bootstrap_servers=kafka.bootstrap,
        group_id=f"test-dlq-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        records = [await asyncio.wait_for(consumer.getone(), timeout=60) for _ in range(2)]
    finally:
        await consumer.stop()
    by_type = {dict(record.headers)["cdsflow-error-type"].decode(): record for record in records}
    assert by_type.keys() == {"InvalidRecommendation", "ForeignEhr"}
    invalid = by_type["InvalidRecommendation"]
    assert invalid.value == broken.SerializeToString()
    assert invalid.key == b"some-key"
    assert "produced_at is missing" in dict(invalid.headers)["cdsflow-error"].decode()
    assert "traceparent" in dict(invalid.headers)
    assert by_type["ForeignEhr"].value == foreign.SerializeToString()
    assert await writeback.cards(http, "pat-elsewhere") == []
    assert writeback.writebacks("written") == 0


async def test_while_the_ehr_is_unreachable_the_recommendation_is_tried_then_dead_lettered(
    kafka: KafkaEndpoint, ehr: EhrEndpoint, unique: str, pseudonym_key: str, http: httpx.AsyncClient
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/fhir"
    async with started_writeback(kafka, unreachable, unique, pseudonym_key) as writeback:
        recommendation = recommendation_for(writeback, unreachable, "unreachable-patient")

        await writeback.publish(recommendation)
        await writeback.wait_for_writebacks("dead_lettered", 1)  # tried, then never forever

        assert writeback.writebacks("written") == 0
        attempts = writeback.telemetry.metrics.registry.get_sample_value(
            "cdsflow_writeback_ehr_write_attempts_total", {"result": "outage"}
        )
        assert attempts == writeback.settings.writeback_max_attempts
        assert await writeback.cards(http, "unreachable-patient")  # still shown
        ready = await http.get(f"{writeback.base_url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["ehr"] is False


async def test_health_readiness_and_metrics(
    writeback: RunningWriteback, http: httpx.AsyncClient
) -> None:
    healthz = await http.get(f"{writeback.base_url}/healthz")
    assert healthz.status_code == 200
    assert healthz.text == "ok"

    async def is_ready() -> httpx.Response | None:
        ready = await http.get(f"{writeback.base_url}/readyz")
        return ready if ready.status_code == 200 else None

    ready = await eventually(is_ready, timeout_s=60, what="/readyz 200")  # Kafka starts after
    assert ready.json() == {
        "broker": True,
        "ehr": True,
        "ehr_circuit_closed": True,
        "recommendations_read_back": True,
    }
    await writeback.cards(http, "nobody-here")
    metrics = (await http.get(f"{writeback.base_url}/metrics")).text
    assert "cdsflow_writeback_hook_duration_seconds_count" in metrics
    assert "cdsflow_writeback_cards_served_total" in metrics
    assert "cdsflow_writeback_risk_assessments_total" in metrics
    assert "cdsflow_writeback_ehr_circuit_state 0.0" in metrics


async def test_the_writeback_starts_before_kafka_and_consumes_once_it_is_up(
    ehr: EhrEndpoint, unique: str, pseudonym_key: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    port = free_port()
    down = KafkaEndpoint(bootstrap=f"127.0.0.1:{port}")
    async with started_writeback(down, ehr.base_url, unique, pseudonym_key) as writeback:
        assert (await http.get(f"{writeback.base_url}/healthz")).status_code == 200
        ready = await http.get(f"{writeback.base_url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "broker": False,
            "ehr": True,
            "ehr_circuit_closed": True,
            "recommendations_read_back": False,
        }

        broker = await asyncio.to_thread(start_broker, tmp_path, port)
        try:

            async def is_ready() -> bool:
                return (await http.get(f"{writeback.base_url}/readyz")).status_code == 200

            await eventually(is_ready, timeout_s=90, what="/readyz 200 once Kafka is up")
            patient_id = await create_patient(http, ehr)
            recommendation = recommendation_for(writeback, ehr.base_url, patient_id)
            await writeback.publish(recommendation)

            async def shown() -> list[dict[str, Any]] | None:
                return await writeback.cards(http, patient_id) or None

            (card,) = await eventually(shown, timeout_s=60, what="the card")
            assert card["indicator"] == "critical"
            await writeback.wait_for_writebacks("written", 1)
        finally:
            if writeback.producer is not None:  # before the broker goes
                await writeback.producer.stop()
                writeback.producer = None
            await asyncio.to_thread(broker.stop)


ALL_READY = {
    "broker": True,
    "ehr": True,
    "ehr_circuit_closed": True,
    "recommendations_read_back": True,
}


async def test_an_idle_caught_up_writeback_is_ready_and_again_once_new_records_are_read(
    writeback: RunningWriteback, ehr: EhrEndpoint, http: httpx.AsyncClient
) -> None:
    """Readiness does not misreport: `broker` is false only until the write-back consumer
    group has joined (after start), and `recommendations_read_back` only until the read-back
    has reached the ends it saw when it connected; neither goes false again while idle or as
    records arrive and are read."""

    async def readiness() -> tuple[int, dict[str, bool]]:
        ready = await http.get(f"{writeback.base_url}/readyz")
        return ready.status_code, ready.json()

    async def ready() -> dict[str, bool] | None:
        status, checks = await readiness()
        return checks if status == 200 else None

    assert await eventually(ready, timeout_s=60, what="/readyz 200") == ALL_READY
    # idle and caught up: every probe says so, not one of them by chance
    for _ in range(5):
        assert await readiness() == (200, ALL_READY)

    patients = [await create_patient(http, ehr) for _ in range(3)]
    for patient_id in patients:
        await writeback.publish(recommendation_for(writeback, ehr.base_url, patient_id))

    async def read_and_ready() -> dict[str, bool] | None:
        held = writeback.telemetry.metrics.registry.get_sample_value(
            "cdsflow_writeback_card_state_patients"
        )
        return await ready() if held == len(patients) else None

    assert await eventually(read_and_ready, timeout_s=30, what="read, then ready") == ALL_READY
    await writeback.wait_for_writebacks("written", len(patients))
    for _ in range(5):
        assert await readiness() == (200, ALL_READY)
