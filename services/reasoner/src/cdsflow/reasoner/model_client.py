"""One model version on Triton, over gRPC, inside a CLIENT span that Triton joins.

Every version an adapter lists is its own `ModelVersionClient`: each request names its
version explicitly, so a shadow version and the active one answer the same event side by
side, and the version on a recommendation is the one that answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import grpc
import numpy.typing as npt
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.models import ModelAdapter
from cdsflow.models.tensor_specs import declared_outputs
from cdsflow.telemetry import trace_headers

log = logging.getLogger("cdsflow.reasoner")

RPC_SERVICE = "inference.GRPCInferenceService"
RPC_METHOD = "ModelInfer"
_TRITON_DATATYPES = {"float32": "FP32", "float64": "FP64", "bool": "BOOL", "object": "BYTES"}


# gRPC statuses that say Triton, or the model on it, cannot answer right now (down, loading,
# overloaded and shedding, too slow, a version not served): not the request's fault, so the
# event waits for Triton.
OUTAGE_STATUSES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "UNKNOWN", "NOT_FOUND"}
)


class ModelUnavailable(Exception):
    """Triton, or the model on it, could not answer; the message is the gRPC status name."""


class ModelRequestFailed(Exception):
    """Triton answered this request with an error (e.g. INVALID_ARGUMENT, INTERNAL) while it
    is up: the request may be at fault, so it is retried a few times, then dead-lettered."""


class ModelVersionClient:
    """One version of an adapter's Triton model, and the mode (`active`/`shadow`) it runs in."""

    def __init__(
        self,
        client: InferenceServerClient,
        adapter: ModelAdapter,
        version: str,
        mode: str,
        tracer: trace.Tracer,
        inference_seconds: Histogram,
        timeout_s: float,
        server_url: str,
    ) -> None:
        self._client = client
        self.adapter = adapter
        self.model_name = adapter.model.triton_name
        self.version = version
        self.mode = mode
        self._tracer = tracer
        # the histogram's child for this model version, resolved once (not per request)
        self._inference_seconds = inference_seconds.labels(model=self.model_name, version=version)
        self._timeout_s = timeout_s
        host, _, port = server_url.rpartition(":")
        self._attributes: dict[str, str | int] = {
            "rpc.system": "grpc",
            "rpc.service": RPC_SERVICE,
            "rpc.method": RPC_METHOD,
            "cdsflow.model.name": self.model_name,
            "cdsflow.model.version": version,
            **({"server.address": host, "server.port": int(port)} if port.isdigit() else {}),
        }
        # the same outputs are asked of every request: built once
        self._output_names = [spec.name for spec in declared_outputs(adapter)]
        self._requested_outputs = [InferRequestedOutput(name) for name in self._output_names]
        prompt = adapter.inputs.prompt
        self._parameters = dict(prompt.parameters) if prompt is not None else None
        self._served = True

    async def is_ready(self, timeout_s: float) -> bool:
        """Whether Triton serves this version; logs once when it stops or starts doing so."""
        try:
            ready = bool(
                await self._client.is_model_ready(
                    self.model_name, self.version, client_timeout=timeout_s
                )
            )
        except InferenceServerException:
            ready = False
        if ready != self._served:
            self._served = ready
            if not ready:
                log.warning(
                    "a model version that an adapter names is not served by Triton",
                    extra={
                        "adapter": self.adapter.id,
                        "model": self.model_name,
                        "model_version": self.version,
                    },
                )
        return ready

    async def infer(self, tensors: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        """The output tensors for one row. Raises `ModelUnavailable` when Triton cannot answer
        now (an outage, or the version is not served), `ModelRequestFailed` when it refused
        this request."""
        # not made current (nothing runs inside it): Triton joins it through its headers
        with self._tracer.start_span(
            f"{RPC_SERVICE}/{RPC_METHOD}",
            kind=SpanKind.CLIENT,
            attributes=self._attributes,
            record_exception=False,
        ) as span:
            started = time.perf_counter()
            try:
                result = await self._client.infer(
                    self.model_name,
                    inputs=_infer_inputs(tensors),
                    model_version=self.version,
                    outputs=self._requested_outputs,
                    headers=trace_headers(span),
                    client_timeout=self._timeout_s,
                    parameters=self._parameters,
                )
            except InferenceServerException as exc:
                status = _status_name(exc)
                span.set_attributes(
                    {"rpc.grpc.status_code": _status_code(status), "error.type": status}
                )
                span.set_status(Status(StatusCode.ERROR))
                if status in OUTAGE_STATUSES:
                    raise ModelUnavailable(status) from exc
                raise ModelRequestFailed(status) from exc
            finally:
                self._inference_seconds.observe(time.perf_counter() - started)
            span.set_attribute("rpc.grpc.status_code", 0)
        return {name: result.as_numpy(name) for name in self._output_names}


def _infer_inputs(tensors: Mapping[str, npt.NDArray[Any]]) -> list[InferInput]:
    inputs = []
    for name, array in tensors.items():
        tensor = InferInput(name, list(array.shape), _TRITON_DATATYPES[array.dtype.name])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _status_name(exc: InferenceServerException) -> str:
    # tritonclient reports "StatusCode.UNAVAILABLE"; keep the name, never the message
    status = str(exc.status() or "UNKNOWN")
    return status.removeprefix("StatusCode.")


def _status_code(status_name: str) -> int:
    """The numeric gRPC status code (`rpc.grpc.status_code`) for a status name."""
    status = grpc.StatusCode.__members__.get(status_name, grpc.StatusCode.UNKNOWN)
    code: int = status.value[0]
    return code
