"""Patients' model inputs scored by one model version on Triton: stacked into batches, sent as
concurrent requests (so that Triton's dynamic batcher merges them), the answers read back
through the adapter (`interpret_outputs`), exactly as the reasoner reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from cdsflow.models import ModelAdapter, ModelContractError, ModelInputs, ModelResult
from cdsflow.models import interpret_outputs as interpret
from cdsflow.models.tensors import stacked_tensors


class TritonScoringError(RuntimeError):
    """Triton could not score a batch, or answered outside the adapter's contract."""


@dataclass(frozen=True)
class ScoringPlan:
    rows_per_request: int = 32
    requests_in_flight: int = 8
    request_timeout_s: float = 60.0


def output_tensor_names(adapter: ModelAdapter) -> list[str]:
    """The output tensors that the adapter reads."""
    outputs = adapter.outputs
    names = [named.tensor for named in outputs.values]
    for declared in (outputs.score, outputs.contributions, outputs.generated_text):
        if declared is not None:
            names.append(declared.tensor)
    return list(dict.fromkeys(names))


def _infer_inputs(tensors: dict[str, npt.NDArray[Any]]) -> list[InferInput]:
    inputs = []
    for name, array in tensors.items():
        tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


async def version_ready(client: InferenceServerClient, adapter: ModelAdapter, version: str) -> bool:
    try:
        return bool(await client.is_model_ready(adapter.model.triton_name, version))
    except InferenceServerException:
        return False


async def score_inputs(
    client: InferenceServerClient,
    adapter: ModelAdapter,
    version: str,
    rows: Sequence[ModelInputs],
    plan: ScoringPlan,
    on_scored: Callable[[int], None] = lambda _rows: None,
) -> list[ModelResult]:
    """Each row's result from `version` of the adapter's model, in the order of `rows`;
    `on_scored(n)` is called as each batch of `n` rows comes back."""
    outputs = output_tensor_names(adapter)
    gate = asyncio.Semaphore(plan.requests_in_flight)

    async def score_batch(start: int) -> list[ModelResult]:
        batch = rows[start : start + plan.rows_per_request]
        async with gate:
            try:
                answer = await client.infer(
                    adapter.model.triton_name,
                    inputs=_infer_inputs(stacked_tensors(batch)),
                    outputs=[InferRequestedOutput(name) for name in outputs],
                    model_version=version,
                    client_timeout=plan.request_timeout_s,
                )
            except InferenceServerException as exc:
                raise TritonScoringError(
                    f"Triton could not score {adapter.model.triton_name} version {version}: "
                    f"{exc.message()}"
                ) from exc
        tensors = {name: answer.as_numpy(name) for name in outputs}
        try:
            results = [interpret(adapter, row, tensors, i) for i, row in enumerate(batch)]
        except ModelContractError as exc:
            raise TritonScoringError(
                f"{adapter.model.triton_name} version {version} broke the adapter's contract: {exc}"
            ) from exc
        on_scored(len(batch))
        return results

    batches = await asyncio.gather(
        *(score_batch(start) for start in range(0, len(rows), plan.rows_per_request))
    )
    return [result for batch in batches for result in batch]


def scores_of(results: Sequence[ModelResult]) -> npt.NDArray[np.float64]:
    return np.array([r.score if r.score is not None else np.nan for r in results], np.float64)
