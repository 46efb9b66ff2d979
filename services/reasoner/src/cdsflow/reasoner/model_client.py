"""The deterioration model on Triton, over gRPC, inside a CLIENT span that Triton joins."""

from __future__ import annotations

import time

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.contracts import ModelRef
from cdsflow.reasoner.domain.model_adapter import (
    OUTPUT_NAMES,
    ModelInputs,
    ModelOutputs,
    model_outputs,
)
from cdsflow.telemetry import trace_headers

RPC_SERVICE = "inference.GRPCInferenceService"
RPC_METHOD = "ModelInfer"
_TRITON_DATATYPES = {"float32": "FP32", "bool": "BOOL"}


# gRPC statuses that say Triton, or the model on it, cannot answer right now (down, loading,
# overloaded and shedding, too slow): not the request's fault, so the event waits for Triton.
OUTAGE_STATUSES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN", "NOT_FOUND"}
)


class ModelUnavailable(Exception):
    """Triton, or the model on it, could not answer; the message is the gRPC status name."""


class ModelRequestFailed(Exception):
    """Triton answered this request with an error (e.g. INVALID_ARGUMENT, INTERNAL) while it
    is up: the request may be at fault, so it is retried a few times, then dead-lettered."""


class TritonModel:
    """One model on one Triton server. Its version is what Triton reports, never configured."""

    def __init__(
        self,
        client: InferenceServerClient,
        model_name: str,
        tracer: trace.Tracer,
        inference_seconds: Histogram,
        timeout_s: float,
        server_url: str,
    ) -> None:
        self._client = client
        self._model_name = model_name
        self._tracer = tracer
        # the histogram's child for this model, resolved once (not per request)
        self._inference_seconds = inference_seconds.labels(model=model_name)
        self._timeout_s = timeout_s
        host, _, port = server_url.rpartition(":")
        self._server_attributes: dict[str, str | int] = (
            {"server.address": host, "server.port": int(port)} if port.isdigit() else {}
        )
        self._model_version = ""
        # the same outputs are asked of every request: built once
        self._requested_outputs = [InferRequestedOutput(name) for name in OUTPUT_NAMES]

    @property
    def model_name(self) -> str:
        return self._model_name

    async def model_ref(self) -> ModelRef:
        """Name and served version, from Triton's model metadata (`versions`)."""
        if not self._model_version:
            try:
                metadata = await self._client.get_model_metadata(
                    self._model_name, as_json=True, client_timeout=self._timeout_s
                )
            except InferenceServerException as exc:
                raise ModelUnavailable(_status_name(exc)) from exc
            self._model_version = served_version(metadata.get("versions") or [])
        return ModelRef(name=self._model_name, version=self._model_version)

    async def is_ready(self, timeout_s: float) -> bool:
        try:
            ready = await self._client.is_model_ready(self._model_name, client_timeout=timeout_s)
        except InferenceServerException:
            return False
        return bool(ready)

    async def infer(self, inputs: ModelInputs) -> tuple[ModelOutputs, ModelRef]:
        """Score one row. Raises `ModelUnavailable` when Triton cannot answer now (an outage),
        `ModelRequestFailed` when it refused this request."""
        expected = await self.model_ref()
        attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": RPC_SERVICE,
            "rpc.method": RPC_METHOD,
            "cdsflow.model.name": expected.name,
            "cdsflow.model.version": expected.version,
            **self._server_attributes,
        }
        with self._tracer.start_as_current_span(
            f"{RPC_SERVICE}/{RPC_METHOD}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
        ) as span:
            started = time.perf_counter()
            try:
                result = await self._client.infer(
                    self._model_name,
                    inputs=_infer_inputs(inputs),
                    outputs=self._requested_outputs,
                    headers=trace_headers(),
                    client_timeout=self._timeout_s,
                )
            except InferenceServerException as exc:
                status = _status_name(exc)
                span.set_attributes(
                    {"rpc.grpc.status_code": _status_code(status), "error.type": status}
                )
                span.set_status(Status(StatusCode.ERROR))
                self._model_version = ""  # the model may have been reloaded: ask again
                if status in OUTAGE_STATUSES:
                    raise ModelUnavailable(status) from exc
                raise ModelRequestFailed(status) from exc
            finally:
                self._inference_seconds.observe(time.perf_counter() - started)
            served = result.get_response().model_version or expected.version
            span.set_attributes({"rpc.grpc.status_code": 0, "cdsflow.model.version": served})
        self._model_version = served
        outputs = model_outputs({name: result.as_numpy(name) for name in OUTPUT_NAMES})
        return outputs, ModelRef(name=self._model_name, version=served)


def served_version(versions: list[str]) -> str:
    """The newest of the versions Triton lists (numerically), as Triton's default policy serves."""
    numeric = sorted((int(v) for v in versions if str(v).isdigit()), reverse=True)
    if not numeric:
        raise ModelUnavailable("NO_VERSION")
    return str(numeric[0])


def _infer_inputs(inputs: ModelInputs) -> list[InferInput]:
    tensors = []
    for name, array in inputs.as_tensors().items():
        tensor = InferInput(name, list(array.shape), _TRITON_DATATYPES[array.dtype.name])
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _status_name(exc: InferenceServerException) -> str:
    # tritonclient reports "StatusCode.UNAVAILABLE"; keep the name, never the message
    status = str(exc.status() or "UNKNOWN")
    return status.removeprefix("StatusCode.")


def _status_code(status_name: str) -> int:
    """The numeric gRPC status code (`rpc.grpc.status_code`) for a status name."""
    status = grpc.StatusCode.__members__.get(status_name, grpc.StatusCode.UNKNOWN)
    code: int = status.value[0]
    return code
