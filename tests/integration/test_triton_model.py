"""The `deterioration_score` model served by the real Triton binary (CPU, python backend)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from tests.conftest import TritonEndpoint
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

MODEL = "deterioration_score"
OUTPUTS = ("deterioration_score", "early_warning_points", "vital_sign_points")
# respiratory rate, SpO2, inhaled O2 %, systolic BP, heart rate, temperature, GCS
WELL = [15, 98, 21, 122, 72, 36.8, 15]
DETERIORATING = [28, 90, 35, 88, 135, 39.4, 13]
ALL_PRESENT = [True] * 7


@pytest.fixture
async def triton_client(triton: TritonEndpoint) -> AsyncIterator[InferenceServerClient]:
    client = InferenceServerClient(triton.grpc_url)
    try:
        yield client
    finally:
        await client.close()


async def _infer(
    client: InferenceServerClient, rows: list[list[float]], present: list[list[bool]]
) -> dict[str, npt.NDArray[np.float32]]:
    values = np.array(rows, dtype=np.float32)
    mask = np.array(present, dtype=np.bool_)
    vital_signs = InferInput("vital_signs", list(values.shape), "FP32")
    vital_signs.set_data_from_numpy(values)
    observed = InferInput("present", list(mask.shape), "BOOL")
    observed.set_data_from_numpy(mask)
    result = await client.infer(
        MODEL,
        inputs=[vital_signs, observed],
        outputs=[InferRequestedOutput(name) for name in OUTPUTS],
        client_timeout=30,
    )
    return {name: result.as_numpy(name) for name in OUTPUTS}


async def test_the_model_is_ready_and_reports_its_version(
    triton_client: InferenceServerClient,
) -> None:
    assert await triton_client.is_model_ready(MODEL)
    metadata: dict[str, Any] = await triton_client.get_model_metadata(MODEL, as_json=True)
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"]) for t in metadata["inputs"]] == [
        ("vital_signs", "FP32"),
        ("present", "BOOL"),
    ]


async def test_a_deteriorating_patient_scores_high_and_a_well_one_low(
    triton_client: InferenceServerClient,
) -> None:
    outputs = await _infer(triton_client, [DETERIORATING, WELL], [ALL_PRESENT, ALL_PRESENT])
    score = outputs["deterioration_score"][:, 0]
    points = outputs["early_warning_points"][:, 0]
    assert points.tolist() == [19.0, 0.0]
    assert outputs["vital_sign_points"][0].tolist() == [3, 3, 2, 3, 3, 2, 3]
    assert score[0] > 0.99
    assert score[1] < 0.05


async def test_missing_vital_signs_do_not_score(triton_client: InferenceServerClient) -> None:
    only_heart_rate = [False, False, False, False, True, False, False]
    outputs = await _infer(triton_client, [DETERIORATING], [only_heart_rate])
    assert outputs["vital_sign_points"][0].tolist() == [0, 0, 0, 0, 3, 0, 0]
    assert outputs["early_warning_points"][0, 0] == 3.0


async def _execution_counts(client: InferenceServerClient) -> tuple[int, int]:
    statistics: dict[str, Any] = await client.get_inference_statistics(MODEL, as_json=True)
    [model] = statistics["model_stats"]
    return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))


async def test_concurrent_requests_are_answered_each_and_batched(
    triton_client: InferenceServerClient,
) -> None:
    requests = 48
    inferences_before, executions_before = await _execution_counts(triton_client)
    rows = [DETERIORATING if i % 2 else WELL for i in range(requests)]
    answers = await asyncio.gather(*(_infer(triton_client, [row], [ALL_PRESENT]) for row in rows))
    points = [answer["early_warning_points"][0, 0] for answer in answers]
    assert points == [19.0 if i % 2 else 0.0 for i in range(requests)]

    async def counted() -> tuple[int, int] | None:
        # Triton updates its statistics just after it answers: wait until all are counted
        inferences, executions = await _execution_counts(triton_client)
        return (inferences, executions) if inferences - inferences_before >= requests else None

    inferences_after, executions_after = await eventually(counted, what="statistics")
    assert inferences_after - inferences_before == requests
    # the dynamic batcher merged concurrent requests into fewer model executions
    assert executions_after - executions_before < requests
