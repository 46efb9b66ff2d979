"""An adapter's model on Triton, for scoring on demand in a hook call (gRPC, asyncio).

Only the adapter's `active` version is asked (a shadow version's result is never shown, so
a hook call does not wait for it). The call is a CLIENT span that Triton joins through the
`traceparent` header. Any failure is `ModelUnavailable`: the hook then answers no cards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.models import ModelAdapter, ModelInputs
from cdsflow.telemetry import trace_headers

RPC_SERVICE = "inference.GRPCInferenceService"
RPC_METHOD = "ModelInfer"
_TRITON_DATATYPES = {"float32": "FP32", "float64": "FP64", "bool": "BOOL", "object": "BYTES"}


class ModelUnavailable(Exception):
    """Triton, or the model on it, did not answer (the message is a status name, no data)."""


def output_names(adapter: ModelAdapter) -> list[str]:
    """Every output tensor the adapter reads."""
    outputs = adapter.outputs
    names = [outputs.score.tensor] if outputs.score is not None else []
    if outputs.contributions is not None:
        names.append(outputs.contributions.tensor)
    names += [value.tensor for value in outputs.values]
    if outputs.generated_text is not None:
        names.append(outputs.generated_text.tensor)
    return list(dict.fromkeys(names))


class TritonScorer:
    """Scores one patient's inputs with one adapter's model version on one Triton server."""

    def __init__(self, client: InferenceServerClient, tracer: trace.Tracer) -> None:
        self._client = client
        self._tracer = tracer

    async def close(self) -> None:
        await self._client.close()

    async def score(
        self, adapter: ModelAdapter, version: str, inputs: ModelInputs, timeout_s: float
    ) -> Mapping[str, npt.NDArray[Any] | None]:
        """The output tensors; `ModelUnavailable` when Triton does not answer in time or
        refuses."""
        names = output_names(adapter)
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": RPC_SERVICE,
            "rpc.method": RPC_METHOD,
            "cdsflow.model.name": adapter.model.triton_name,
            "cdsflow.model.version": version,
        }
        with self._tracer.start_as_current_span(
            f"{RPC_SERVICE}/{RPC_METHOD}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
        ) as span:
            try:
                result = await self._client.infer(
                    adapter.model.triton_name,
                    inputs=_infer_inputs(inputs.tensors),
                    outputs=[InferRequestedOutput(name) for name in names],
                    model_version=version,
                    headers=trace_headers(),
                    client_timeout=max(timeout_s, 0.001),
                )
            except InferenceServerException as exc:
                status = str(exc.status() or "UNKNOWN").removeprefix("StatusCode.")
                span.set_attribute("error.type", status)
                span.set_status(Status(StatusCode.ERROR))
                raise ModelUnavailable(status) from None
        return {name: result.as_numpy(name) for name in names}


def _infer_inputs(tensors: Mapping[str, npt.NDArray[Any]]) -> list[InferInput]:
    inputs = []
    for name, array in tensors.items():
        value = np.ascontiguousarray(array)
        tensor = InferInput(name, list(value.shape), _TRITON_DATATYPES[value.dtype.name])
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs
