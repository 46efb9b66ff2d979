"""Triton shedding load, on the real parts: a Triton of its own serves `deterioration_risk`
with a queue of one request that waits a while for a batch, so concurrent requests beyond
the first are refused (RESOURCE_EXHAUSTED). The reasoner treats a refusal as an outage: the
event is handed back, not committed, and consumed again; nothing is lost, nothing is
answered twice, nothing is dead-lettered, and `/readyz` says the model is not ready."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tritonclient.grpc import InferInput, InferResult
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.contracts import Recommendation
from cdsflow.runtime.parts import start_triton
from cdsflow.telemetry import Telemetry
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.integration.test_reasoner import (
    chart,
    clinical_event,
    deteriorating,
    publish,
    ready,
    reasoner_settings,
    sample_value,
    serve_reasoner,
)
from tests.support.polling import eventually
from tests.support.risk_model import risk_model_repository
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

MODEL = "deterioration_risk"
# a request waits up to this long in the queue for a batch; meanwhile the queue is full
QUEUE_DELAY_US = 300_000
BURST = 6
SHED_STATUSES = {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"}


def shedding_cpu_config(shipped: str) -> str:
    """The shipped CPU configuration with a queue of one request, held `QUEUE_DELAY_US`."""
    dynamic_batching = re.compile(r"dynamic_batching \{.*?\n\}\n", re.DOTALL)
    assert dynamic_batching.search(shipped)
    return dynamic_batching.sub(
        "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n"
        "  default_queue_policy {\n"
        "    timeout_action: REJECT\n"
        "    default_timeout_microseconds: 5000000\n"
        "    max_queue_size: 1\n"
        "  }\n"
        "}\n",
        shipped,
    )


@pytest.fixture(scope="module")
def shedding_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonEndpoint]:
    """A Triton of its own whose deterioration_risk queue holds one request."""
    folder = tmp_path_factory.mktemp("shedding")
    repository = risk_model_repository(folder, ("1",))
    config = repository / MODEL / "configs" / "cpu.pbtxt"
    config.write_text(shedding_cpu_config(config.read_text(encoding="utf-8")), encoding="utf-8")
    part = start_triton(repository, folder)
    try:
        yield TritonEndpoint(
            grpc_url=part.endpoints["triton_grpc"], http_url=part.endpoints["triton_http"]
        )
    finally:
        part.stop()


@pytest.fixture
def telemetry_spans(pseudonym_key: str) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    with recording_telemetry("reasoner", pseudonym_key) as recording:
        yield recording


async def infer_one(client: InferenceServerClient) -> InferResult | InferenceServerException:
    features = InferInput("features", [1, 15], "FP32")
    features.set_data_from_numpy(np.zeros((1, 15), dtype=np.float32))
    present = InferInput("present", [1, 15], "BOOL")
    present.set_data_from_numpy(np.ones((1, 15), dtype=np.bool_))
    try:
        return await client.infer(MODEL, [features, present], model_version="1")
    except InferenceServerException as exc:
        return exc


async def test_triton_sheds_concurrent_requests_beyond_its_queue(
    shedding_triton: TritonEndpoint,
) -> None:
    async with InferenceServerClient(shedding_triton.grpc_url) as client:
        answers = await asyncio.gather(*(infer_one(client) for _ in range(8)))
        refused = [a for a in answers if isinstance(a, InferenceServerException)]
        answered = [a for a in answers if not isinstance(a, InferenceServerException)]
        assert answered, "the first request in the queue is answered"
        assert refused, "the requests beyond the queue are shed"
        for exc in refused:
            # this Triton says UNAVAILABLE over gRPC (503 over HTTP); RESOURCE_EXHAUSTED is
            # the other status a shedding server may give: both are outages to the reasoner
            assert exc.status() in SHED_STATUSES, (exc.status(), exc.message())
            assert "Exceeds maximum queue size" in (exc.message() or "")
        # one at a time, nothing is shed
        assert not isinstance(await infer_one(client), InferenceServerException)


async def every_record(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic`'s partition 0, up to its end offset now."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    await consumer.seek_to_beginning(partition)
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        end = (await consumer.end_offsets([partition]))[partition]
        async with asyncio.timeout(30):
            while await consumer.position(partition) < end:
                records.append(await consumer.getone())
    finally:
        await consumer.stop()
    return records


async def committed_offset(bootstrap: str, group: str, topic: str) -> int:
    """The offset `group` has committed on `topic`'s partition 0; -1 when none."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        committed = await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()
    return committed if committed is not None else -1


async def test_events_shed_by_triton_are_handed_back_and_each_answered_once(
    kafka: KafkaEndpoint,
    shedding_triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    telemetry, spans = telemetry_spans
    patients = [await chart(ehr, deteriorating) for _ in range(BURST)]
    events = [
        clinical_event(p.trigger, p.reference, telemetry.patient_keyer, ehr) for p in patients
    ]
    # one request per row: the burst's rows, asked for together, would otherwise share one
    # request, which this Triton's queue of one takes
    settings = reasoner_settings(kafka, shedding_triton.grpc_url, ehr, unique, inference_max_rows=1)
    async with serve_reasoner(settings, telemetry, spans) as running:

        async def is_ready() -> bool:
            return (await ready(running.base_url)).status_code == 200

        await eventually(is_ready, timeout_s=60, what="/readyz 200 before the burst")

        not_ready: list[dict[str, bool]] = []
        burst_done = asyncio.Event()

        async def watch_readiness() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                while not burst_done.is_set():
                    response = await http.get(f"{running.base_url}/readyz")
                    if response.status_code == 503:
                        not_ready.append(response.json())
                    await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch_readiness())
        try:
            # one patient per event: the reasoner asks Triton for all of them at once, a
            # request each
            await publish(
                kafka.bootstrap,
                running.topics.clinical_events,
                *((e.SerializeToString(), e.patient_key.encode()) for e in events),
            )

            # every event is committed in the end: none was lost on the way
            async def all_committed() -> bool:
                offset = await committed_offset(
                    kafka.bootstrap, settings.consumer_group, running.topics.clinical_events
                )
                return offset == BURST

            await eventually(all_committed, timeout_s=60, what=f"{BURST} events committed")
        finally:
            burst_done.set()
            await watcher

        metrics = await running.metrics()
        shed = sample_value(
            metrics, "cdsflow_reasoner_dependency_failures_total", {"dependency": "triton"}
        )
        assert shed >= 1, "Triton shed some of the burst"
        assert "cdsflow_reasoner_dlq_total{" not in metrics
        # while Triton shed, /readyz said the model was not ready (and the broker was)
        assert not_ready, "/readyz was never 503 while Triton shed"
        assert all(body["model"] is False for body in not_ready)
        # Triton answers again: the reasoner is ready again
        await eventually(is_ready, timeout_s=30, what="/readyz 200 after the burst")

    recommended = [
        Recommendation.FromString(r.value)
        for r in await every_record(kafka.bootstrap, running.topics.recommendations)
    ]
    # exactly one recommendation per event: nothing lost, nothing answered twice
    assert sorted(r.event_id for r in recommended) == sorted(e.event_id for e in events)
    assert {r.scores[0].band for r in recommended} == {"high"}
    assert await every_record(kafka.bootstrap, running.topics.dead_letters) == []
