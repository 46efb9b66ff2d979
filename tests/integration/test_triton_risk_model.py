"""`deterioration_risk` served by the real Triton binary here: the CPU configuration
(python backend running model.onnx with onnxruntime), several versions at once, and the GPU
configuration read by Triton 2.51 itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime
import pytest
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.runtime.parts import start_triton
from cdsflow.runtime.processes import ProcessFailed
from cdsflow.training.evaluation_set import read_evaluation_set
from cdsflow.training.news2 import news2_points
from tests.conftest import TritonEndpoint
from tests.support.polling import eventually
from tests.support.risk_model import (
    HELD_OUT_SET,
    RISK_MODEL_ONNX,
    onnx_intercept,
    risk_model_repository,
)

pytestmark = pytest.mark.integration

MODEL = "deterioration_risk"
OUTPUTS = ("deterioration_risk", "log_odds", "contributions")
SPO2 = 1
# columns 0-6: respiratory rate, SpO2, inhaled O2 %, systolic BP, heart rate, temperature,
# GCS; 7-13 their trends over 24 h; 14 age
NEWS2_ZERO = [16, 97, 21, 125, 75, 37.0, 15, 0, 0, 0, 0, 0, 0, 0, 70]
NEWS2_HIGH = [26, 91, 28, 98, 118, 38.6, 15, 0, 0, 0, 0, 0, 0, 0, 70]
ALL_PRESENT = [True] * 15
Outputs = dict[str, npt.NDArray[np.float32]]


async def _infer(
    client: InferenceServerClient,
    features: npt.ArrayLike,
    present: npt.ArrayLike,
    version: str = "",
    queue_timeout_us: int | None = None,
) -> Outputs:
    values = np.asarray(features, dtype=np.float32)
    mask = np.asarray(present, dtype=np.bool_)
    tensor = InferInput("features", list(values.shape), "FP32")
    tensor.set_data_from_numpy(values)
    observed = InferInput("present", list(mask.shape), "BOOL")
    observed.set_data_from_numpy(mask)
    result = await client.infer(
        MODEL,
        inputs=[tensor, observed],
        outputs=[InferRequestedOutput(name) for name in OUTPUTS],
        model_version=version,
        timeout=queue_timeout_us,
        client_timeout=30,
    )
    return {name: result.as_numpy(name) for name in OUTPUTS}


async def test_the_cpu_configuration_is_loaded_with_its_tensors(
    triton_client: InferenceServerClient,
) -> None:
    assert await triton_client.is_model_ready(MODEL)
    metadata: dict[str, Any] = await triton_client.get_model_metadata(MODEL, as_json=True)
    assert metadata["versions"] == ["1"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        ("features", "FP32", ["-1", "15"]),
        ("present", "BOOL", ["-1", "15"]),
    ]
    config: dict[str, Any] = await triton_client.get_model_config(MODEL, as_json=True)
    assert config["config"]["backend"] == "python"  # configs/cpu.pbtxt, not config.pbtxt
    policy = config["config"]["dynamic_batching"]["default_queue_policy"]
    assert policy.get("timeout_action", "REJECT") == "REJECT"  # the default, left out of JSON
    assert int(policy["max_queue_size"]) > 0
    assert int(policy["default_timeout_microseconds"]) > 0


async def test_a_batch_scores_as_the_onnx_file_does(
    triton_client: InferenceServerClient,
) -> None:
    rows = read_evaluation_set(HELD_OUT_SET)
    features, present = rows.features[:64], rows.present[:64]
    outputs = await _infer(triton_client, features, present)
    session = onnxruntime.InferenceSession(str(RISK_MODEL_ONNX), providers=["CPUExecutionProvider"])
    expected = session.run(list(OUTPUTS), {"features": features, "present": present})
    for name, array in zip(OUTPUTS, expected, strict=True):
        np.testing.assert_array_equal(outputs[name], array)
    assert outputs["deterioration_risk"].shape == (64, 1)
    assert outputs["contributions"].shape == (64, 15)


async def test_news2_of_seven_or_more_ranks_above_news2_zero(
    triton_client: InferenceServerClient,
) -> None:
    points = news2_points([NEWS2_HIGH[:7], NEWS2_ZERO[:7]], [ALL_PRESENT[:7]] * 2)
    assert points[0] >= 7
    assert points[1] == 0
    outputs = await _infer(triton_client, [NEWS2_HIGH, NEWS2_ZERO], [ALL_PRESENT] * 2)
    high, zero = outputs["deterioration_risk"][:, 0]
    assert high > zero
    # and across the held-out set: patients with NEWS2 >= 7 against those with NEWS2 0
    rows = read_evaluation_set(HELD_OUT_SET)
    news2 = news2_points(rows.features[:, :7], rows.present[:, :7])
    risk = (await _infer(triton_client, rows.features[:256], rows.present[:256]))[
        "deterioration_risk"
    ][:, 0]
    ranked = risk[news2[:256] >= 7][:, None] > risk[news2[:256] == 0][None, :]
    assert ranked.size > 100
    assert ranked.mean() > 0.9


async def test_contributions_add_up_to_the_log_odds_and_the_risk(
    triton_client: InferenceServerClient,
) -> None:
    rows = read_evaluation_set(HELD_OUT_SET)
    outputs = await _infer(triton_client, rows.features[:128], rows.present[:128])
    log_odds = outputs["log_odds"][:, 0].astype(np.float64)
    total = outputs["contributions"].astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(log_odds - total, onnx_intercept(), atol=1e-5)
    np.testing.assert_allclose(
        outputs["deterioration_risk"][:, 0], 1 / (1 + np.exp(-log_odds)), atol=1e-6
    )


async def test_a_missing_input_is_not_scored_as_a_normal_one(
    triton_client: InferenceServerClient,
) -> None:
    missing = list(ALL_PRESENT)
    missing[SPO2] = False
    absent_low = list(NEWS2_ZERO)
    absent_low[SPO2] = 70.0
    outputs = await _infer(
        triton_client, [NEWS2_ZERO, NEWS2_ZERO, absent_low], [ALL_PRESENT, missing, missing]
    )
    contributions = outputs["contributions"][:, SPO2]
    assert contributions[0] != contributions[1]  # normal SpO2 vs not observed
    assert contributions[1] == contributions[2]  # an absent value is ignored, whatever it is


async def test_concurrent_requests_each_get_their_own_rows(
    triton_client: InferenceServerClient,
) -> None:
    rows = read_evaluation_set(HELD_OUT_SET)
    alone = await _infer(triton_client, rows.features[:32], rows.present[:32])
    inferences_before, executions_before = await _execution_counts(triton_client)
    answers = await asyncio.gather(
        *(
            _infer(triton_client, rows.features[i : i + 1], rows.present[i : i + 1])
            for i in range(32)
        )
    )
    together = np.concatenate([a["deterioration_risk"] for a in answers])
    # the same rows (a batch's sums may differ from a row's in the last float32 bit)
    np.testing.assert_allclose(together, alone["deterioration_risk"], rtol=1e-5, atol=0)

    async def counted() -> tuple[int, int] | None:
        # Triton updates its statistics just after it answers: wait until all are counted
        inferences, executions = await _execution_counts(triton_client)
        return (inferences, executions) if inferences - inferences_before >= 32 else None

    inferences_after, executions_after = await eventually(counted, what="statistics")
    assert inferences_after - inferences_before == 32
    # the dynamic batcher merged concurrent requests into fewer model executions
    assert executions_after - executions_before < 32


async def _execution_counts(client: InferenceServerClient) -> tuple[int, int]:
    statistics: dict[str, Any] = await client.get_inference_statistics(MODEL, as_json=True)
    [model] = statistics["model_stats"]
    return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))


async def test_a_request_queued_past_its_timeout_is_rejected_not_run(
    triton_client: InferenceServerClient,
) -> None:
    # the queue policy allows a request to shorten its timeout: 1 us cannot be met, since the
    # dynamic batcher holds a request up to 500 us for company, so the policy must reject it
    with pytest.raises(InferenceServerException, match="Request timeout expired") as refused:
        await _infer(triton_client, [NEWS2_HIGH], [ALL_PRESENT], queue_timeout_us=1)
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    outputs = await _infer(triton_client, [NEWS2_HIGH], [ALL_PRESENT])
    assert outputs["deterioration_risk"].shape == (1, 1)


async def test_two_versions_are_served_at_once(two_version_triton: TritonEndpoint) -> None:
    client = InferenceServerClient(two_version_triton.grpc_url)
    try:
        metadata: dict[str, Any] = await client.get_model_metadata(MODEL, as_json=True)
        assert sorted(metadata["versions"]) == ["1", "2"]
        first, second = [
            await _infer(client, [NEWS2_HIGH], [ALL_PRESENT], version=v) for v in ("1", "2")
        ]
        np.testing.assert_array_equal(first["contributions"], second["contributions"])
    finally:
        await client.close()


async def test_triton_2_51_reads_the_gpu_configuration_up_to_its_backend(tmp_path: Path) -> None:
    # the binary here has no onnxruntime backend and no GPU; with config.pbtxt it must get
    # as far as looking for the backend (so Triton 2.51 parsed and accepted the file)
    repository = risk_model_repository(tmp_path, ("1",), cpu=False)
    with pytest.raises(ProcessFailed):
        await asyncio.to_thread(start_triton, repository, tmp_path, None, 60, None)
    log = (tmp_path / "triton.log").read_text()
    assert "unable to find backend library for backend 'onnxruntime'" in log
    assert "failed to parse" not in log.lower()
