"""The reasoner against the real parts: Tansu (Kafka), Triton (the model) and SEKMET (the EHR).

Each test runs the reasoner in-process under uvicorn on its own topics and consumer group.
The patient's vital signs are written to SEKMET, so that the reasoner's history search finds
them; the triggering Observation is also published as a `ClinicalEvent`, as the listener would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cdsflow.contracts import (
    DLQ_ERROR_HEADER,
    DLQ_ERROR_TYPE_HEADER,
    ClinicalEvent,
    EventSource,
    Indicator,
    Mode,
    Recommendation,
    dead_letter_topic,
)
from cdsflow.fhir import EhrClient
from cdsflow.reasoner.app import create_app
from cdsflow.reasoner.settings import Settings
from cdsflow.runtime.parts import start_broker
from cdsflow.runtime.processes import free_port
from cdsflow.runtime.story import vital_sign_observation
from cdsflow.telemetry import PatientKeyer, Telemetry, TelemetrySettings, setup_telemetry
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.support.asgi import serve_app
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
# most tests here check the deterioration adapter, and run it alone
ADAPTERS_DIR = Path(__file__).resolve().parents[2] / "adapters"
DETERIORATION_ADAPTER = ADAPTERS_DIR / "deterioration-risk.yaml"


# ---------------------------------------------------------------- FHIR on SEKMET


def vital_sign(
    patient: str, code: str, value: float, unit: str, effective: datetime
) -> dict[str, Any]:
    return vital_sign_observation(patient, effective, code, value=value, ucum=unit)


def blood_pressure(patient: str, systolic: float, effective: datetime) -> dict[str, Any]:
    panel = vital_sign(patient, "85354-9", 0, "mm[Hg]", effective)
    del panel["valueQuantity"]
    panel["component"] = [
        {
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "valueQuantity": {"value": value, "unit": "mm[Hg]", "code": "mm[Hg]"},
        }
        for code, value in (("8480-6", systolic), ("8462-4", 60))
    ]
    return panel


@dataclass
class ChartedPatient:
    reference: str
    observations: list[dict[str, Any]]  # as stored by the EHR, the trigger last

    @property
    def trigger(self) -> dict[str, Any]:
        return self.observations[-1]


async def chart(ehr: EhrEndpoint, vitals: Callable[[str], list[dict[str, Any]]]) -> ChartedPatient:
    """A new Patient on the EHR with `vitals(patient_reference)` recorded, in order."""
    async with httpx.AsyncClient(timeout=30) as http:
        client = EhrClient(ehr.base_url, http)
        patient = await client.create({"resourceType": "Patient", "active": True})
        reference = f"Patient/{patient['id']}"
        stored = [await client.create(resource) for resource in vitals(reference)]
    return ChartedPatient(reference, stored)


def deteriorating(patient: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(minutes=20)
    return [
        vital_sign(patient, "8867-4", 72, "/min", now - timedelta(hours=6)),  # superseded
        vital_sign(patient, "8867-4", 134, "/min", earlier),
        vital_sign(patient, "59408-5", 90, "%", earlier),
        blood_pressure(patient, 88, earlier),
        vital_sign(patient, "8310-5", 39.4, "Cel", earlier),
        vital_sign(patient, "9279-1", 28, "/min", now),  # the trigger
    ]


def well(patient: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(minutes=20)
    return [
        vital_sign(patient, "8867-4", 70, "/min", earlier),
        vital_sign(patient, "59408-5", 98, "%", earlier),
        blood_pressure(patient, 124, earlier),
        vital_sign(patient, "9279-1", 15, "/min", now),
    ]


def clinical_event(
    resource: dict[str, Any], patient: str, keyer: PatientKeyer, ehr: EhrEndpoint
) -> ClinicalEvent:
    event = ClinicalEvent(
        event_id=uuid.uuid4().hex,
        resource_type=resource["resourceType"],
        resource_id=resource["id"],
        resource_json=json.dumps(resource).encode(),
        patient_key=keyer.patient_key(patient),
        patient_reference=patient,
        source=EventSource(ehr_base_url=ehr.base_url),
    )
    event.occurred_at.FromDatetime(datetime.now(UTC))
    event.received_at.FromDatetime(datetime.now(UTC))
    return event


# ---------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class Topics:
    clinical_events: str
    recommendations: str

    @property
    def dead_letters(self) -> str:
        return dead_letter_topic(self.clinical_events)


async def create_topics(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = (topics.clinical_events, topics.recommendations, topics.dead_letters)
        await admin.create_topics(
            [NewTopic(n, num_partitions=1, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def publish(
    bootstrap: str, topic: str, *messages: tuple[bytes, bytes | None], traceparent: str = ""
) -> None:
    """Each (value, key) in order; with a W3C traceparent header when given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    headers = [("traceparent", traceparent.encode())] if traceparent else None
    try:
        for value, key in messages:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_until(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout_s: float = 60,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records of `topic` from the beginning until `done(records)`; fails at the deadline."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(timeout_s):
            while not done(records):
                records.append(await consumer.getone())
    finally:
        await consumer.stop()
    return records


def recommendation_for(
    records: list[ConsumerRecord[bytes, bytes]], event_id: str
) -> tuple[Recommendation, ConsumerRecord[bytes, bytes]] | None:
    for record in records:
        recommendation = Recommendation.FromString(record.value)
        if recommendation.event_id == event_id:
            return recommendation, record
    return None


async def recommendations(
    bootstrap: str, topics: Topics, event_ids: list[str]
) -> dict[str, tuple[Recommendation, ConsumerRecord[bytes, bytes]]]:
    records = await read_until(
        bootstrap,
        topics.recommendations,
        lambda got: all(recommendation_for(got, e) is not None for e in event_ids),
    )
    found = {e: recommendation_for(records, e) for e in event_ids}
    return {e: r for e, r in found.items() if r is not None}


def headers_of(record: ConsumerRecord[bytes, bytes]) -> dict[str, str]:
    return {key: value.decode() for key, value in record.headers}


# ---------------------------------------------------------------- the reasoner


@dataclass
class RunningReasoner:
    base_url: str
    settings: Settings
    spans: InMemorySpanExporter
    keyer: PatientKeyer
    topics: Topics

    async def metrics(self) -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(f"{self.base_url}/metrics")).text

    async def metric(
        self, name: str, at_least: float, timeout_s: float = 10, **labels: str
    ) -> float:
        """The value of one sample, once it has reached `at_least`.

        Counters move just after the output they count is published: poll, never assume.
        """

        async def reached() -> float | None:
            value = sample_value(await self.metrics(), name, labels)
            return value if value >= at_least else None

        what = f"{name}{labels} >= {at_least}"
        return await eventually(reached, timeout_s=timeout_s, what=what)


def sample_value(metrics: str, name: str, labels: Mapping[str, str]) -> float:
    """The value of the sample `name` with exactly `labels` in a Prometheus text exposition;
    0 when there is none."""
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and sample.labels == dict(labels):
                return float(sample.value)
    return 0.0


def reasoner_settings(
    kafka: KafkaEndpoint, triton_grpc_url: str, ehr: EhrEndpoint, unique: str, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "ehr_base_url": ehr.base_url,
        "kafka_bootstrap": kafka.bootstrap,
        "kafka_idempotence": False,
        "clinical_events_topic": f"test.clinical-events.{unique}",
        "recommendations_topic": f"test.recommendations.{unique}",
        "consumer_group": f"test-reasoner-{unique}",
        "triton_grpc_url": triton_grpc_url,
        "dependency_retry_s": 0.5,
        "adapters": (DETERIORATION_ADAPTER,),
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def telemetry_spans(pseudonym_key: str) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    with recording_telemetry("reasoner", pseudonym_key) as recording:
        yield recording


@asynccontextmanager
async def serve_reasoner(
    settings: Settings, telemetry: Telemetry, spans: InMemorySpanExporter
) -> AsyncIterator[RunningReasoner]:
    topics = Topics(settings.clinical_events_topic, settings.recommendations_topic)
    await create_topics(settings.kafka_bootstrap, topics)
    async with serve_app(create_app(settings, telemetry=telemetry)) as base_url:
        yield RunningReasoner(base_url, settings, spans, telemetry.patient_keyer, topics)


@pytest.fixture
async def reasoner(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> AsyncIterator[RunningReasoner]:
    telemetry, spans = telemetry_spans
    settings = reasoner_settings(kafka, triton.grpc_url, ehr, unique)
    async with serve_reasoner(settings, telemetry, spans) as running:
        yield running


async def ready(base_url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"{base_url}/readyz")


# ---------------------------------------------------------------- tests


async def test_a_deteriorating_patient_gets_a_high_risk_recommendation(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    patient = await chart(ehr, deteriorating)
    event = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    key = event.patient_key.encode()
    await publish(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.clinical_events,
        (event.SerializeToString(), key),
        traceparent=TRACEPARENT,
    )

    found = await recommendations(
        reasoner.settings.kafka_bootstrap, reasoner.topics, [event.event_id]
    )
    recommendation, record = found[event.event_id]

    assert record.key == key
    assert recommendation.patient_key == event.patient_key
    assert recommendation.patient_reference == patient.reference
    assert recommendation.ehr_base_url == ehr.base_url
    assert (recommendation.model.name, recommendation.model.version) == ("deterioration_risk", "1")
    assert recommendation.adapter_id == "deterioration-risk"
    assert recommendation.mode == Mode.MODE_ACTIVE
    assert recommendation.trace_id == TRACE_ID
    # the writeback measures the end-to-end latency from when the listener received it
    assert recommendation.event_received_at == event.received_at
    score, log_odds = recommendation.scores
    assert (score.name, score.band) == ("deterioration_risk", "high")
    assert score.value >= 0.3
    assert log_odds.name == "log_odds"
    assessment, rapid_response = recommendation.cards
    assert assessment.indicator == Indicator.INDICATOR_CRITICAL
    assert assessment.summary.startswith("High risk of clinical deterioration")
    assert "Respiratory rate" in assessment.detail
    assert assessment.override_reasons[0].code == "already-reviewed"
    [suggestion] = rapid_response.suggestions
    assert suggestion.actions[0].type == "create"
    ids = [o["id"] for o in patient.observations]
    inputs = {i.name: (i.value, i.resource_reference) for i in recommendation.basis.inputs}
    assert inputs == {
        "respiratory_rate": (28.0, f"Observation/{ids[5]}"),
        "oxygen_saturation": (90.0, f"Observation/{ids[2]}"),
        "systolic_blood_pressure": (88.0, f"Observation/{ids[3]}"),
        "heart_rate": (134.0, f"Observation/{ids[1]}"),
        "body_temperature": (pytest.approx(39.4), f"Observation/{ids[4]}"),
        # 134 now against 72 six hours before: both readings are its basis
        "heart_rate_trend": (62.0, f"Observation/{ids[1]}"),
    }
    contributions = [i.contribution for i in recommendation.basis.inputs]
    assert contributions == sorted(contributions, reverse=True)  # largest first
    assert set(recommendation.basis.resource_references) == {f"Observation/{i}" for i in ids}

    # one trace: the event's traceparent -> consumer span -> Triton client span -> publish
    assert headers_of(record)["traceparent"].split("-")[1] == TRACE_ID

    # the recommendation is published inside the consumer span, which ends just after
    async def consumer_span_ended() -> Sequence[ReadableSpan] | None:
        finished = reasoner.spans.get_finished_spans()
        return finished if any(s.kind == SpanKind.CONSUMER for s in finished) else None

    spans = await eventually(consumer_span_ended, timeout_s=10, what="the consumer span")
    [consumer] = [s for s in spans if s.kind == SpanKind.CONSUMER]
    [infer] = [s for s in spans if s.name == "inference.GRPCInferenceService/ModelInfer"]
    assert consumer.parent is not None
    assert format(consumer.parent.span_id, "016x") == TRACEPARENT.split("-")[2]
    assert format(consumer.context.trace_id, "032x") == TRACE_ID
    assert infer.kind == SpanKind.CLIENT
    assert infer.parent is not None
    assert infer.parent.span_id == consumer.context.span_id
    assert (consumer.attributes or {})["cdsflow.outcome"] == "recommended"
    expected = {
        "rpc.system": "grpc",
        "rpc.service": "inference.GRPCInferenceService",
        "rpc.method": "ModelInfer",
        "cdsflow.model.name": "deterioration_risk",
        "cdsflow.model.version": "1",
        "rpc.grpc.status_code": 0,
    }
    attributes = dict(infer.attributes or {})
    assert {key: attributes.get(key) for key in expected} == expected


async def test_a_well_patient_gets_a_low_risk_recommendation_without_cards(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    patient = await chart(ehr, well)
    patient_id = patient.reference.split("/")[1]
    encounter_id = uuid.uuid4().hex[:16]
    encounter = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    ignored = ClinicalEvent(
        event_id=uuid.uuid4().hex,
        resource_type="Encounter",
        resource_id=encounter_id,
        resource_json=json.dumps(encounter).encode(),
        patient_reference=patient.reference,
    )
    event = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    key = event.patient_key.encode()
    # same key, same partition: the ignored event is handled before the vital sign
    await publish(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.clinical_events,
        (ignored.SerializeToString(), key),
        (event.SerializeToString(), key),
    )
    records = await read_until(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.recommendations,
        lambda got: recommendation_for(got, event.event_id) is not None,
    )
    found = recommendation_for(records, event.event_id)
    assert found is not None
    recommendation, _ = found
    assert recommendation.scores[0].band == "low"
    assert recommendation.scores[0].value < 0.1
    assert list(recommendation.cards) == []
    assert len(recommendation.basis.inputs) == 4
    assert recommendation_for(records, ignored.event_id) is None
    ignored_events = "cdsflow_reasoner_ignored_events_total"
    assert await reasoner.metric(ignored_events, at_least=1, reason="resource-not-read") == 1


async def test_unprocessable_messages_land_on_the_dead_letter_topic_and_nothing_sticks(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    patient = await chart(ehr, well)
    event = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    key = event.patient_key.encode()
    not_protobuf = b"\xff\xfe not a clinical event"
    pressure = {"value": 310.2, "unit": "mm[Hg]", "code": "mm[Hg]"}
    not_a_temperature = dict(patient.trigger, valueQuantity=pressure)
    not_a_temperature["code"] = {"coding": [{"system": LOINC, "code": "8310-5"}]}
    unconvertible = clinical_event(not_a_temperature, patient.reference, reasoner.keyer, ehr)
    await publish(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.clinical_events,
        (not_protobuf, key),
        (unconvertible.SerializeToString(), key),
        (event.SerializeToString(), key),
    )

    dead = await read_until(
        reasoner.settings.kafka_bootstrap, reasoner.topics.dead_letters, lambda got: len(got) >= 2
    )
    assert [(record.value, record.key) for record in dead] == [
        (not_protobuf, key),
        (unconvertible.SerializeToString(), key),
    ]
    errors = [headers_of(record) for record in dead]
    assert [h[DLQ_ERROR_TYPE_HEADER] for h in errors] == ["UnprocessableEvent", "ImplausibleValue"]
    assert errors[0][DLQ_ERROR_HEADER] == "the message body is not a ClinicalEvent"
    assert errors[1][DLQ_ERROR_HEADER] == (
        "body_temperature is recorded in a unit its model does not accept"
    )
    # the event behind them on the same partition is answered: nothing is stuck
    found = await recommendations(
        reasoner.settings.kafka_bootstrap, reasoner.topics, [event.event_id]
    )
    assert found[event.event_id][0].scores[0].band == "low"
    metrics = await reasoner.metrics()
    assert 'cdsflow_reasoner_dlq_total{error_type="UnprocessableEvent"} 1.0' in metrics
    assert 'cdsflow_reasoner_dlq_total{error_type="ImplausibleValue"} 1.0' in metrics
    assert (
        "cdsflow_reasoner_recommendations_total{"
        'adapter="deterioration-risk",band="low",mode="active",version="1"} 1.0'
    ) in metrics
    assert (
        'cdsflow_reasoner_inference_seconds_count{model="deterioration_risk",version="1"} 1.0'
    ) in metrics


async def test_ready_once_consuming_with_the_model_ready(reasoner: RunningReasoner) -> None:
    async def is_ready() -> bool:
        return (await ready(reasoner.base_url)).status_code == 200

    await eventually(is_ready, timeout_s=60, what="/readyz 200")
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(f"{reasoner.base_url}/healthz")).status_code == 200


async def test_an_event_waits_for_triton_and_is_answered_once_it_is_back(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    pseudonym_key: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, spans = telemetry_spans
    nowhere = f"127.0.0.1:{free_port()}"
    unavailable = reasoner_settings(kafka, nowhere, ehr, unique)
    patient = await chart(ehr, deteriorating)
    event = clinical_event(patient.trigger, patient.reference, telemetry.patient_keyer, ehr)

    async with serve_reasoner(unavailable, telemetry, spans) as running:
        response = await ready(running.base_url)
        assert response.status_code == 503
        assert response.json()["model"] is False
        await publish(
            kafka.bootstrap,
            running.topics.clinical_events,
            (event.SerializeToString(), event.patient_key.encode()),
        )

        async def retried() -> bool:
            return 'cdsflow_reasoner_dependency_failures_total{dependency="triton"}' in (
                await running.metrics()
            )

        await eventually(retried, timeout_s=60, what="a failed inference attempt")
        assert "cdsflow_reasoner_dlq_total{" not in await running.metrics()

    # the same consumer group, now with Triton: the uncommitted event is consumed again
    with_triton = reasoner_settings(kafka, triton.grpc_url, ehr, unique)
    restarted = setup_telemetry(
        "reasoner", TelemetrySettings(pseudonym_key=SecretStr(pseudonym_key))
    )
    try:
        async with serve_reasoner(with_triton, restarted, spans) as running:
            found = await recommendations(kafka.bootstrap, running.topics, [event.event_id])
    finally:
        restarted.shutdown()
    assert found[event.event_id][0].scores[0].band == "high"


async def test_the_reasoner_starts_before_kafka_and_consumes_once_it_is_up(
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    tmp_path: Path,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, _ = telemetry_spans
    port = free_port()
    settings = reasoner_settings(
        KafkaEndpoint(bootstrap=f"127.0.0.1:{port}"), triton.grpc_url, ehr, unique
    )
    async with serve_app(create_app(settings, telemetry=telemetry)) as base_url:
        response = await ready(base_url)
        assert response.status_code == 503
        assert response.json()["broker"] is False
        broker = await asyncio.to_thread(start_broker, tmp_path, port)
        try:

            async def is_ready() -> bool:
                return (await ready(base_url)).status_code == 200

            await eventually(is_ready, timeout_s=90, what="/readyz 200 once Kafka is up")
            topics = Topics(settings.clinical_events_topic, settings.recommendations_topic)
            await create_topics(settings.kafka_bootstrap, topics)
            patient = await chart(ehr, well)
            event = clinical_event(patient.trigger, patient.reference, telemetry.patient_keyer, ehr)
            await publish(
                settings.kafka_bootstrap,
                topics.clinical_events,
                (event.SerializeToString(), event.patient_key.encode()),
            )
            found = await recommendations(settings.kafka_bootstrap, topics, [event.event_id])
            assert found[event.event_id][0].scores[0].band == "low"
        finally:
            await asyncio.to_thread(broker.stop)


# ---------------------------------------------------------------- hardening: what is never scored


def impossible_rates(patient: str) -> list[dict[str, Any]]:
    """A well patient whose two latest respiratory rates are impossible; a heart rate last."""
    now = datetime.now(UTC).replace(microsecond=0)
    earlier = now - timedelta(minutes=20)
    return [
        vital_sign(patient, "9279-1", 16, "/min", earlier),
        vital_sign(patient, "59408-5", 98, "%", earlier),
        blood_pressure(patient, 124, earlier),
        vital_sign(patient, "9279-1", 1e308, "/min", now - timedelta(minutes=3)),
        vital_sign(patient, "9279-1", -5, "/min", now - timedelta(minutes=2)),
        vital_sign(patient, "8867-4", 72, "/min", now - timedelta(minutes=1)),
    ]


def event_ids_of(records: list[ConsumerRecord[bytes, bytes]]) -> set[str]:
    return {Recommendation.FromString(record.value).event_id for record in records}


async def test_impossible_vital_signs_are_dead_lettered_and_never_scored(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    patient = await chart(ehr, impossible_rates)
    huge, negative, heart_rate = (
        clinical_event(resource, patient.reference, reasoner.keyer, ehr)
        for resource in patient.observations[3:]
    )
    key = heart_rate.patient_key.encode()
    bootstrap = reasoner.settings.kafka_bootstrap
    await publish(
        bootstrap,
        reasoner.topics.clinical_events,
        *((event.SerializeToString(), key) for event in (huge, negative, heart_rate)),
    )

    dead = await read_until(bootstrap, reasoner.topics.dead_letters, lambda got: len(got) >= 2)
    assert [record.value for record in dead] == [
        huge.SerializeToString(),
        negative.SerializeToString(),
    ]
    assert [headers_of(record)[DLQ_ERROR_TYPE_HEADER] for record in dead] == [
        "ImplausibleValue"
    ] * 2
    assert [headers_of(record)[DLQ_ERROR_HEADER] for record in dead] == [
        "respiratory_rate is beyond the range of a 32-bit float",
        "respiratory_rate is below its plausible range (0-150 /min)",
    ]

    # one partition, in order: once the heart rate is answered, the rates were handled
    records = await read_until(
        bootstrap,
        reasoner.topics.recommendations,
        lambda got: heart_rate.event_id in event_ids_of(got),
    )
    assert event_ids_of(records) == {heart_rate.event_id}
    found = recommendation_for(records, heart_rate.event_id)
    assert found is not None
    recommendation, _ = found
    # the impossible rates on the EHR are skipped: the latest plausible one is the basis
    ids = [o["id"] for o in patient.observations]
    inputs = {i.name: (i.value, i.resource_reference) for i in recommendation.basis.inputs}
    assert inputs["respiratory_rate"] == (16.0, f"Observation/{ids[0]}")
    assert inputs["heart_rate"] == (72.0, f"Observation/{ids[5]}")
    assert f"Observation/{ids[3]}" not in recommendation.basis.resource_references
    assert f"Observation/{ids[4]}" not in recommendation.basis.resource_references
    assert recommendation.scores[0].band == "low"

    dlq = "cdsflow_reasoner_dlq_total"
    assert await reasoner.metric(dlq, at_least=2, error_type="ImplausibleValue") == 2
    # each refusal counts: once as the trigger, once in the heart rate's history
    refused_values = "cdsflow_reasoner_refused_values_total"
    for reason in ("not-float32", "below-range"):
        refused = await reasoner.metric(
            refused_values,
            at_least=2,
            adapter="deterioration-risk",
            data="respiratory_rate",
            reason=reason,
        )
        assert refused == 2


def saturation_of_140(patient: str) -> list[dict[str, Any]]:
    """A patient whose oxygen saturation is charted at 140 %; a heart rate after it."""
    now = datetime.now(UTC).replace(microsecond=0)
    return [
        vital_sign(patient, "59408-5", 140, "%", now - timedelta(minutes=2)),
        vital_sign(patient, "8867-4", 88, "/min", now - timedelta(minutes=1)),
    ]


async def test_an_oxygen_saturation_of_140_percent_is_refused_and_never_fed(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    patient = await chart(ehr, saturation_of_140)
    saturation, heart_rate = (
        clinical_event(resource, patient.reference, reasoner.keyer, ehr)
        for resource in patient.observations
    )
    bootstrap = reasoner.settings.kafka_bootstrap
    await publish(
        bootstrap,
        reasoner.topics.clinical_events,
        *((e.SerializeToString(), e.patient_key.encode()) for e in (saturation, heart_rate)),
    )
    [dead] = await read_until(bootstrap, reasoner.topics.dead_letters, lambda got: len(got) >= 1)
    assert dead.value == saturation.SerializeToString()
    assert headers_of(dead)[DLQ_ERROR_TYPE_HEADER] == "ImplausibleValue"
    assert headers_of(dead)[DLQ_ERROR_HEADER] == (
        "oxygen_saturation is above its plausible range (0-100 %)"
    )
    records = await read_until(
        bootstrap,
        reasoner.topics.recommendations,
        lambda got: heart_rate.event_id in event_ids_of(got),
    )
    assert event_ids_of(records) == {heart_rate.event_id}
    found = recommendation_for(records, heart_rate.event_id)
    assert found is not None
    # the 140 % on the EHR is left out of the heart rate's context: not observed, not fed
    names = [i.name for i in found[0].basis.inputs]
    assert names == ["heart_rate"]
    refused = await reasoner.metric(
        "cdsflow_reasoner_refused_values_total",
        at_least=2,
        adapter="deterioration-risk",
        data="oxygen_saturation",
        reason="above-range",
    )
    assert refused == 2  # the event's own value, then the same value in the EHR's history


async def test_a_metformin_order_with_a_low_egfr_gets_the_medication_adapters_shadow_card(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, spans = telemetry_spans
    settings = reasoner_settings(kafka, triton.grpc_url, ehr, unique, adapters=(ADAPTERS_DIR,))
    now = datetime.now(UTC).replace(microsecond=0)

    def low_egfr(patient: str) -> list[dict[str, Any]]:
        egfr = vital_sign(patient, "98979-8", 24, "mL/min/{1.73_m2}", now - timedelta(days=3))
        egfr["category"] = [{"coding": [{"code": "laboratory"}]}]
        return [egfr]

    patient = await chart(ehr, low_egfr)
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"metformin-{unique}"[:64],
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "861007"}]
        },
        "subject": {"reference": patient.reference},
        "authoredOn": now.isoformat(),
    }
    event = clinical_event(order, patient.reference, telemetry.patient_keyer, ehr)
    async with serve_reasoner(settings, telemetry, spans) as running:
        await publish(
            kafka.bootstrap,
            running.topics.clinical_events,
            (event.SerializeToString(), event.patient_key.encode()),
        )
        found = await recommendations(kafka.bootstrap, running.topics, [event.event_id])
    recommendation, _ = found[event.event_id]
    # the order feeds only the medication adapter; its eGFR came from the EHR (first seen)
    assert recommendation.adapter_id == "medication-safety"
    assert recommendation.model.name == "medication_safety"
    assert recommendation.mode == Mode.MODE_SHADOW  # as the adapter declares it
    assert recommendation.scores[0].band == "contraindicated"
    inputs = {i.name: i.value for i in recommendation.basis.inputs}
    assert inputs == {"egfr": 24.0, "metformin_ordered": 1.0}
    assert recommendation.cards[0].indicator == Indicator.INDICATOR_CRITICAL


async def test_a_patient_the_ehr_does_not_know_gets_no_recommendation(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    stranger = f"Patient/{uuid.uuid4()}"  # never created on SEKMET
    async with httpx.AsyncClient(timeout=30) as http:
        unknown_vitals = await EhrClient(ehr.base_url, http).create(
            vital_sign(stranger, "9279-1", 28, "/min", datetime.now(UTC).replace(microsecond=0))
        )
    unknown = clinical_event(unknown_vitals, stranger, reasoner.keyer, ehr)
    patient = await chart(ehr, well)
    first = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    again = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    bootstrap = reasoner.settings.kafka_bootstrap
    await publish(
        bootstrap,
        reasoner.topics.clinical_events,
        *((e.SerializeToString(), e.patient_key.encode()) for e in (unknown, first, again)),
    )

    [dead] = await read_until(bootstrap, reasoner.topics.dead_letters, lambda got: len(got) >= 1)
    assert dead.value == unknown.SerializeToString()
    assert headers_of(dead)[DLQ_ERROR_TYPE_HEADER] == "UnknownPatient"
    assert headers_of(dead)[DLQ_ERROR_HEADER] == (
        "the configured EHR does not know the event's patient"
    )
    records = await read_until(
        bootstrap,
        reasoner.topics.recommendations,
        lambda got: {first.event_id, again.event_id} <= event_ids_of(got),
    )
    assert event_ids_of(records) == {first.event_id, again.event_id}

    checks = "cdsflow_reasoner_patient_checks_total"
    assert await reasoner.metric(checks, at_least=1, outcome="unknown") == 1
    # the second event about the same patient does not ask the EHR again
    assert await reasoner.metric(checks, at_least=1, outcome="confirmed") == 1
    assert await reasoner.metric(checks, at_least=1, outcome="known") == 1
    dlq = "cdsflow_reasoner_dlq_total"
    assert await reasoner.metric(dlq, at_least=1, error_type="UnknownPatient") == 1


async def test_another_servers_patient_is_never_charted_on_the_local_one(
    reasoner: RunningReasoner, ehr: EhrEndpoint
) -> None:
    patient = await chart(ehr, deteriorating)
    local_id = patient.reference.split("/")[1]
    key = reasoner.keyer.patient_key(patient.reference)

    def about(subject: str, patient_reference: str, patient_key: str = key) -> ClinicalEvent:
        resource = dict(patient.trigger, subject={"reference": subject})
        event = clinical_event(resource, patient.reference, reasoner.keyer, ehr)
        event.patient_reference = patient_reference
        event.patient_key = patient_key
        return event

    foreign_subject = about(f"http://other.example/fhir/Patient/{local_id}", patient.reference)
    foreign_event = about(patient.reference, f"//other.example/fhir/Patient/{local_id}")
    dot_segments = about(f"{ehr.base_url}/../other/Patient/{local_id}", "")
    other_key = about(patient.reference, patient.reference, reasoner.keyer.patient_key("Patient/x"))
    answered = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    refused = (foreign_subject, foreign_event, dot_segments, other_key)
    bootstrap = reasoner.settings.kafka_bootstrap
    await publish(
        bootstrap,
        reasoner.topics.clinical_events,
        *((event.SerializeToString(), key.encode()) for event in (*refused, answered)),
    )

    dead = await read_until(bootstrap, reasoner.topics.dead_letters, lambda got: len(got) >= 4)
    assert [record.value for record in dead] == [event.SerializeToString() for event in refused]
    assert [headers_of(record)[DLQ_ERROR_TYPE_HEADER] for record in dead] == [
        "ForeignPatient",
        "ForeignPatient",
        "ForeignPatient",
        "PatientKeyMismatch",
    ]
    records = await read_until(
        bootstrap,
        reasoner.topics.recommendations,
        lambda got: answered.event_id in event_ids_of(got),
    )
    assert event_ids_of(records) == {answered.event_id}
    dlq = "cdsflow_reasoner_dlq_total"
    assert await reasoner.metric(dlq, at_least=3, error_type="ForeignPatient") == 3
    assert await reasoner.metric(dlq, at_least=1, error_type="PatientKeyMismatch") == 1


async def test_an_ehr_outage_during_the_patient_check_is_retried_not_refused(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, spans = telemetry_spans
    patient = await chart(ehr, well)
    nowhere = EhrEndpoint(base_url=f"http://127.0.0.1:{free_port()}/fhir")
    settings = reasoner_settings(kafka, triton.grpc_url, nowhere, unique)
    event = clinical_event(patient.trigger, patient.reference, telemetry.patient_keyer, ehr)
    async with serve_reasoner(settings, telemetry, spans) as running:
        await publish(
            kafka.bootstrap,
            running.topics.clinical_events,
            (event.SerializeToString(), event.patient_key.encode()),
        )
        # handed back and consumed again at least once: never judged an unknown patient
        failures = "cdsflow_reasoner_dependency_failures_total"
        await running.metric(failures, at_least=2, timeout_s=60, dependency="ehr")
        metrics = await running.metrics()
        assert "cdsflow_reasoner_dlq_total{" not in metrics
        assert 'cdsflow_reasoner_patient_checks_total{outcome="unknown"}' not in metrics
