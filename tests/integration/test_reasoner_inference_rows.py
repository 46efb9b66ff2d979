"""The reasoner's model client on the real Triton: the rows that patients ask for at the same
moment go in one request, and each patient gets its own row of the answer back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tritonclient.grpc.aio import InferenceServerClient

from cdsflow.models import ModelAdapter, ModelInputs, build_model_inputs, load_adapter
from cdsflow.reasoner.metrics import ReasonerMetrics
from cdsflow.reasoner.model_client import ModelVersionClient
from cdsflow.telemetry import MetricsRegistry
from tests.conftest import TritonEndpoint
from tests.integration.test_reasoner import DETERIORATION_ADAPTER, vital_sign

pytestmark = pytest.mark.integration

PATIENTS = 30
OUTPUTS = ("deterioration_risk", "log_odds", "contributions")


def patient_inputs(
    adapter: ModelAdapter, heart_rate: float, respiratory_rate: float
) -> ModelInputs:
    """One patient's row: two vital signs taken a minute ago, the rest not observed."""
    taken = datetime.now(UTC) - timedelta(minutes=1)
    resources = [
        vital_sign("Patient/p", "8867-4", heart_rate, "/min", taken),
        vital_sign("Patient/p", "9279-1", respiratory_rate, "/min", taken),
    ]
    return build_model_inputs(adapter, resources, datetime.now(UTC))


def version_client(
    client: InferenceServerClient,
    adapter: ModelAdapter,
    triton: TritonEndpoint,
    max_rows: int,
    spans: InMemorySpanExporter,
) -> tuple[ModelVersionClient, ReasonerMetrics]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = ReasonerMetrics.register(MetricsRegistry("reasoner"))
    model = ModelVersionClient(
        client,
        adapter,
        "1",
        "active",
        provider.get_tracer("test"),
        metrics.inference_seconds,
        timeout_s=30,
        server_url=triton.grpc_url,
        max_rows=max_rows,
        rows_per_request=metrics.inference_rows,
    )
    return model, metrics


async def triton_requests(triton: TritonEndpoint) -> tuple[int, int]:
    """(requests, rows) Triton has answered for version 1, from its statistics extension."""
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(f"{triton.http_url}/v2/models/deterioration_risk/versions/1/stats")
    answer.raise_for_status()
    stats = answer.json()["model_stats"][0]
    return int(stats["inference_stats"]["success"]["count"]), int(stats["inference_count"])


def histogram_sum_and_count(metrics: ReasonerMetrics) -> tuple[float, float]:
    samples = {
        sample.name: sample.value
        for family in metrics.inference_rows.collect()
        for sample in family.samples
        if sample.name.endswith(("_sum", "_count"))
    }
    return samples["cdsflow_reasoner_inference_rows_sum"], samples[
        "cdsflow_reasoner_inference_rows_count"
    ]


async def test_rows_asked_together_go_in_one_request_and_each_gets_its_own_answer(
    triton_client: InferenceServerClient, triton: TritonEndpoint
) -> None:
    adapter = load_adapter(DETERIORATION_ADAPTER)
    rows = [patient_inputs(adapter, 60 + 3 * n, 12 + n % 15) for n in range(PATIENTS)]
    spans = InMemorySpanExporter()
    alone, _ = version_client(triton_client, adapter, triton, 1, spans)
    together, metrics = version_client(triton_client, adapter, triton, 8, spans)

    # each row on its own, one after the other: what each patient's answer must be
    expected: list[dict[str, Any]] = [await alone.infer(inputs) for inputs in rows]
    spans.clear()

    requests_before, rows_before = await triton_requests(triton)
    answers: list[dict[str, Any]] = await asyncio.gather(
        *(together.infer(inputs) for inputs in rows)
    )
    requests_after, rows_after = await triton_requests(triton)

    for mine, theirs in zip(answers, expected, strict=True):
        for name in OUTPUTS:
            assert mine[name].shape == theirs[name].shape  # [1, width], as a row sent alone
            np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-6)
    # patients with other vital signs got other answers: the rows were not mixed up
    assert len({float(answer["deterioration_risk"][0, 0]) for answer in answers}) > PATIENTS // 2

    # 30 rows asked in one turn, at most 8 per request: 4 requests
    assert rows_after - rows_before == PATIENTS
    assert requests_after - requests_before == 4
    assert histogram_sum_and_count(metrics) == (PATIENTS, 4)
    # each row kept its own CLIENT span, saying how many rows its request carried
    attributes = [dict(span.attributes or {}) for span in spans.get_finished_spans()]
    assert len(attributes) == PATIENTS
    assert sorted(int(str(a["cdsflow.inference.rows"])) for a in attributes) == [6] * 6 + [8] * 24
    assert {a["rpc.grpc.status_code"] for a in attributes} == {0}


async def test_a_row_asked_alone_is_sent_at_once(
    triton_client: InferenceServerClient, triton: TritonEndpoint
) -> None:
    adapter = load_adapter(DETERIORATION_ADAPTER)
    together, metrics = version_client(triton_client, adapter, triton, 8, InMemorySpanExporter())
    for n in range(3):
        answer = await together.infer(patient_inputs(adapter, 70 + n, 14))
        risk = answer["deterioration_risk"]
        assert risk is not None
        assert risk.shape == (1, 1)
    assert histogram_sum_and_count(metrics) == (3, 3)
