"""Shadow beside active, on the real parts: an adapter listing version 1 active and version 2
shadow of `deterioration_risk` gets two recommendations per event from a Triton serving both
versions (one request each, the version named); a version Triton does not serve makes the
reasoner not ready, without stopping it. The two-version Triton is the session's
(`two_version_triton` in tests/conftest.py), so inferences are counted from before the event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import ConsumerRecord
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cdsflow.contracts import Mode, Recommendation
from cdsflow.models import load_adapter
from cdsflow.telemetry import Telemetry
from tests.conftest import EhrEndpoint, KafkaEndpoint, TritonEndpoint
from tests.integration.test_reasoner import (
    DETERIORATION_ADAPTER,
    TRACE_ID,
    TRACEPARENT,
    RunningReasoner,
    chart,
    clinical_event,
    deteriorating,
    publish,
    read_until,
    ready,
    reasoner_settings,
    serve_reasoner,
)
from tests.support.polling import eventually
from tests.support.telemetry import recording_telemetry

pytestmark = pytest.mark.integration

SHIPPED_VERSIONS = """  versions:
    - version: 1
      mode: active
"""


def adapter_with_versions(folder: Path, versions: dict[str, str]) -> Path:
    """The shipped deterioration adapter, listing `versions` ({version: mode}) instead."""
    text = DETERIORATION_ADAPTER.read_text(encoding="utf-8")
    assert SHIPPED_VERSIONS in text
    listed = "".join(
        f"    - version: {version}\n      mode: {mode}\n" for version, mode in versions.items()
    )
    path = folder / "deterioration-shadow.yaml"
    path.write_text(text.replace(SHIPPED_VERSIONS, f"  versions:\n{listed}"), encoding="utf-8")
    assert [v.version for v in load_adapter(path).model.versions] == list(versions)
    return path


async def inference_counts(triton: TritonEndpoint) -> list[int]:
    """How many inferences versions 1 and 2 of deterioration_risk have run, by Triton's count."""
    counts = []
    async with httpx.AsyncClient(timeout=10) as http:
        for version in ("1", "2"):
            stats = await http.get(
                f"{triton.http_url}/v2/models/deterioration_risk/versions/{version}/stats"
            )
            counts.append(int(stats.json()["model_stats"][0].get("inference_count", 0)))
    return counts


@pytest.fixture
def telemetry_spans(pseudonym_key: str) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    with recording_telemetry("reasoner", pseudonym_key) as recording:
        yield recording


@pytest.fixture
async def shadow_reasoner(
    kafka: KafkaEndpoint,
    two_version_triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    tmp_path: Path,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
) -> AsyncIterator[RunningReasoner]:
    telemetry, spans = telemetry_spans
    adapter = adapter_with_versions(tmp_path, {"1": "active", "2": "shadow"})
    settings = reasoner_settings(
        kafka, two_version_triton.grpc_url, ehr, unique, adapters=(adapter,)
    )
    async with serve_reasoner(settings, telemetry, spans) as running:
        yield running


async def test_one_event_gets_an_active_and_a_shadow_recommendation(
    shadow_reasoner: RunningReasoner, ehr: EhrEndpoint, two_version_triton: TritonEndpoint
) -> None:
    reasoner = shadow_reasoner
    inferences_before = await inference_counts(two_version_triton)
    patient = await chart(ehr, deteriorating)
    event = clinical_event(patient.trigger, patient.reference, reasoner.keyer, ehr)
    await publish(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.clinical_events,
        (event.SerializeToString(), event.patient_key.encode()),
        traceparent=TRACEPARENT,
    )

    def for_the_event(records: list[ConsumerRecord[bytes, bytes]]) -> list[Recommendation]:
        decoded = (Recommendation.FromString(record.value) for record in records)
        return [r for r in decoded if r.event_id == event.event_id]

    records = await read_until(
        reasoner.settings.kafka_bootstrap,
        reasoner.topics.recommendations,
        lambda got: len(for_the_event(got)) >= 2,
    )
    by_version = {r.model.version: r for r in for_the_event(records)}
    assert sorted(by_version) == ["1", "2"]
    active, shadow = by_version["1"], by_version["2"]
    assert (active.mode, shadow.mode) == (Mode.MODE_ACTIVE, Mode.MODE_SHADOW)
    assert active.event_id == shadow.event_id == event.event_id
    assert active.recommendation_id != shadow.recommendation_id
    for recommendation in (active, shadow):
        assert recommendation.model.name == "deterioration_risk"
        assert recommendation.adapter_id == "deterioration-risk"
        assert recommendation.trace_id == TRACE_ID
        assert recommendation.scores[0].band == "high"
    # the same model file in both versions: the shadow says what the active one says
    assert shadow.scores[0].value == pytest.approx(active.scores[0].value)

    recommended = "cdsflow_reasoner_recommendations_total"
    for version, mode in (("1", "active"), ("2", "shadow")):
        counted = await reasoner.metric(
            recommended,
            at_least=1,
            adapter="deterioration-risk",
            version=version,
            mode=mode,
            band="high",
        )
        assert counted == 1

    # one request per version, each naming its version: both versions ran once
    async def inferences_per_version() -> list[int] | None:
        counts = await inference_counts(two_version_triton)
        ran = [after - before for after, before in zip(counts, inferences_before, strict=True)]
        # Triton counts just after it answers
        return ran if all(ran) else None

    assert await eventually(inferences_per_version, what="Triton's statistics") == [1, 1]


async def test_a_version_triton_does_not_serve_makes_the_reasoner_not_ready(
    kafka: KafkaEndpoint,
    triton: TritonEndpoint,
    ehr: EhrEndpoint,
    unique: str,
    tmp_path: Path,
    telemetry_spans: tuple[Telemetry, InMemorySpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry, spans = telemetry_spans
    adapter = adapter_with_versions(tmp_path, {"1": "active", "7": "shadow"})
    settings = reasoner_settings(kafka, triton.grpc_url, ehr, unique, adapters=(adapter,))
    async with serve_reasoner(settings, telemetry, spans) as running:

        async def broker_ready_model_not() -> dict[str, bool] | None:
            body: dict[str, bool] = (await ready(running.base_url)).json()
            return body if body.get("broker") else None

        body = await eventually(broker_ready_model_not, timeout_s=60, what="broker ready")
        assert body["model"] is False
        assert (await ready(running.base_url)).status_code == 503
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(f"{running.base_url}/healthz")).status_code == 200
    assert any(
        "not served by Triton" in record.getMessage()
        and getattr(record, "model_version", None) == "7"
        for record in caplog.records
    )
