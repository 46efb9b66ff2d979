"""The writeback's consumer in patient lanes (fakes for the EHR writer, the `.dlq` and the Kafka
consumer): each record in its own CONSUMER span of its producer's trace, the trace id in the
write-back, each patient's writes in order, and a `.dlq` publish that fails handed back."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from cdsflow.service import DeadLetters, LaneBatches, Record
from cdsflow.telemetry import MetricsRegistry
from cdsflow.writeback.ehr_writes import EhrWriter, WriteDone
from cdsflow.writeback.handlers import RecommendationConsumer, WritebackMetrics
from tests.support.recording_consumer import RecordingConsumer
from tests.unit.writeback.sample_recommendations import EHR_BASE_URL, recommendation

TOPIC = "cdsflow.recommendations.v1"


class Writer:
    """Records each bundle; each write takes a moment, so lanes overlap."""

    def __init__(self) -> None:
        self.bundles: list[dict[str, Any]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def write(self, bundle: dict[str, Any]) -> WriteDone:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        self.bundles.append(bundle)
        return WriteDone(created=4, attempts=1)


class Dlq:
    topic = f"{TOPIC}.dlq"

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[Mapping[str, str]] = []

    async def send(
        self,
        body: bytes,
        key: bytes | None,
        error_type: str,
        error: str,
        details: Mapping[str, str] | None = None,
        *,
        trace_headers: Mapping[str, str] | None = None,
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is away")
        self.sent.append(dict(trace_headers or {}))


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def record(offset: int, body: bytes, key: bytes, trace_id: int) -> Record:
    traceparent = f"00-{trace_id:032x}-{secrets.randbits(64):016x}-01"
    return ConsumerRecord(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=body,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(body),
        headers=[("traceparent", traceparent.encode())],
    )


def consumer_of(provider: TracerProvider, writer: Writer, dlq: Dlq) -> RecommendationConsumer:
    return RecommendationConsumer(
        ehr_base_url=EHR_BASE_URL,
        writer=cast(EhrWriter, cast(Any, writer)),
        dead_letters=cast(DeadLetters, cast(Any, dlq)),
        metrics=WritebackMetrics.on(MetricsRegistry("writeback")),
        writeback_enabled=True,
        tracer=provider.get_tracer("test"),
    )


def lanes(handler: RecommendationConsumer, concurrent: int) -> LaneBatches:
    return LaneBatches(
        handler.handle, max_concurrent_patients=concurrent, pause_max_s=0.01, first_pause_s=0.01
    )


async def test_patients_at_once_each_in_order_each_in_its_own_trace(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    writer = Writer()
    batches = lanes(consumer_of(provider, writer, Dlq()), concurrent=3)
    published = [
        recommendation(recommendation_id=f"rec-{n}", patient_id=f"pat-{n % 4}") for n in range(12)
    ]
    trace_ids = [secrets.randbits(128) for _ in published]
    records = [
        record(n, r.SerializeToString(), r.patient_key.encode(), trace_ids[n])
        for n, r in enumerate(published)
    ]
    consumer = RecordingConsumer()

    await batches.handle(records, consumer.as_kafka)

    assert writer.most_in_flight == 3
    assert consumer.commits == [{TopicPartition(TOPIC, 0): 12}]
    written = [json.dumps(bundle) for bundle in writer.bundles]
    for patient in range(4):
        ids = [f"rec-{n}" for n in range(patient, 12, 4)]
        order = [next(i for i, text in enumerate(written) if f'"{rid}"' in text) for rid in ids]
        assert order == sorted(order)
    # each record's span continues its own producer's trace, whose id the write-back names
    consumed = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert {s.name for s in consumed} == {f"{TOPIC} process"}
    assert sorted(s.context.trace_id for s in consumed) == sorted(trace_ids)
    for n, trace_id in enumerate(trace_ids):
        (bundle,) = [text for text in written if f'"rec-{n}"' in text]
        assert f"{trace_id:032x}" in bundle


async def test_a_dead_letter_not_published_is_handed_back_and_consumed_again(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    writer = Writer()
    dlq = Dlq(failures=1)
    batches = lanes(consumer_of(provider, writer, dlq), concurrent=2)
    good = recommendation(recommendation_id="rec-good", patient_id="pat-1")
    trace_id = secrets.randbits(128)
    records = [
        record(0, good.SerializeToString(), b"a", secrets.randbits(128)),
        record(1, b"not a recommendation", b"b", trace_id),
        record(2, good.SerializeToString(), b"b", secrets.randbits(128)),
    ]
    consumer = RecordingConsumer()
    kafka = consumer.as_kafka

    await batches.handle(records, kafka)

    partition = TopicPartition(TOPIC, 0)
    # "b" stopped at its undecodable record; its next one never started
    assert len(writer.bundles) == 1
    assert consumer.commits == [{partition: 1}]
    assert consumer.seeks == [(partition, 1)]

    await batches.handle(records[1:], kafka)

    assert consumer.commits[-1] == {partition: 3}
    assert len(writer.bundles) == 2
    # the dead letter carries its PRODUCER span's context, in the record's trace
    (headers,) = dlq.sent
    assert headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    producers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert {s.name for s in producers} == {f"{TOPIC}.dlq publish"}
    assert {s.context.trace_id for s in producers} == {trace_id}
