"""One model version on Triton, over gRPC, inside a CLIENT span that Triton joins.

Every version an adapter lists is its own `ModelVersionClient`: each request names its
version explicitly, so a shadow version and the active one answer the same event side by
side, and the version on a recommendation is the one that answered.

Rows asked for at the same moment go to Triton together. Each `infer` call is one patient's
row; the rows that the patients of a batch ask for in one turn of the event loop are stacked
into one request (at most `max_rows`), sent on the next turn, and each caller gets its own
row of the answer back. Nothing waits for a batch to fill: a lone row goes alone, one turn
later. One request per row cost the reasoner and Triton about 0.35 ms of CPU per row on the
bench machine; five rows per request, about 0.12 ms per row.

Each row keeps its own CLIENT span in its own event's trace (`cdsflow.inference.rows`: how
many rows its request carried); Triton joins the trace of the request's first row. A request
that Triton refuses (not an outage) is sent again one row at a time, so one row at fault
fails only its own event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy.typing as npt
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cdsflow.models import ModelAdapter, ModelInputs
from cdsflow.models.tensor_specs import declared_outputs
from cdsflow.models.tensors import stacked_tensors
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


@dataclass
class _Row:
    """One caller's row, waiting for its request."""

    inputs: ModelInputs
    span: trace.Span
    answer: asyncio.Future[dict[str, npt.NDArray[Any] | None]]


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
        max_rows: int,
        rows_per_request: Histogram,
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
        self._max_rows = max_rows
        self._rows_per_request = rows_per_request.labels(model=self.model_name, version=version)
        # the rows asked for in this turn of the event loop, sent together on the next
        self._waiting: list[_Row] = []
        self._requests: set[asyncio.Task[None]] = set()

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

    async def infer(self, inputs: ModelInputs) -> dict[str, npt.NDArray[Any] | None]:
        """The output tensors for one row (each [1, ...]). Raises `ModelUnavailable` when
        Triton cannot answer now (an outage, or the version is not served),
        `ModelRequestFailed` when it refused this row."""
        # not made current (nothing runs inside it): Triton joins it through its headers
        with self._tracer.start_span(
            f"{RPC_SERVICE}/{RPC_METHOD}",
            kind=SpanKind.CLIENT,
            attributes=self._attributes,
            record_exception=False,
        ) as span:
            started = time.perf_counter()
            row = _Row(inputs, span, asyncio.get_running_loop().create_future())
            if not self._waiting:
                asyncio.get_running_loop().call_soon(self._send_waiting)
            self._waiting.append(row)
            try:
                return await row.answer
            except (ModelUnavailable, ModelRequestFailed) as exc:
                status = str(exc)
                span.set_attributes(
                    {"rpc.grpc.status_code": _status_code(status), "error.type": status}
                )
                span.set_status(Status(StatusCode.ERROR))
                raise
            finally:
                self._inference_seconds.observe(time.perf_counter() - started)

    def _send_waiting(self) -> None:
        """Every row asked for in the last turn, in requests of at most `max_rows` rows."""
        waiting, self._waiting = self._waiting, []
        for first in range(0, len(waiting), self._max_rows):
            request = asyncio.create_task(self._request(waiting[first : first + self._max_rows]))
            self._requests.add(request)
            request.add_done_callback(self._requests.discard)

    async def _request(self, rows: Sequence[_Row]) -> None:
        """One request for `rows`; each caller's future gets its row of the answer, or the
        failure. A refused request of several rows is sent again one row at a time."""
        for row in rows:
            row.span.set_attribute("cdsflow.inference.rows", len(rows))
        try:
            outputs = await self._send(rows)
        except ModelRequestFailed as exc:
            if len(rows) == 1:
                _fail(rows, exc)
            else:
                await asyncio.gather(*(self._request([row]) for row in rows))
            return
        except Exception as exc:  # an outage, or unexpected: each caller gets it
            _fail(rows, exc)
            return
        if len(rows) == 1:
            # as Triton answered: the adapter's outputs check its shapes
            _answer(rows[0], outputs)
            return
        split = _split(outputs, len(rows))
        if split is None:
            # not one answer row per row: each row alone, whose answer the adapter checks
            await asyncio.gather(*(self._request([row]) for row in rows))
            return
        for row, answer in zip(rows, split, strict=True):
            _answer(row, answer)

    async def _send(self, rows: Sequence[_Row]) -> dict[str, npt.NDArray[Any] | None]:
        self._rows_per_request.observe(len(rows))
        try:
            result = await self._client.infer(
                self.model_name,
                inputs=_infer_inputs(stacked_tensors([row.inputs for row in rows])),
                model_version=self.version,
                outputs=self._requested_outputs,
                headers=trace_headers(rows[0].span),
                client_timeout=self._timeout_s,
                parameters=self._parameters,
            )
        except InferenceServerException as exc:
            status = _status_name(exc)
            if status in OUTAGE_STATUSES:
                raise ModelUnavailable(status) from exc
            raise ModelRequestFailed(status) from exc
        for row in rows:
            row.span.set_attribute("rpc.grpc.status_code", 0)
        return {name: result.as_numpy(name) for name in self._output_names}


def _split(
    outputs: dict[str, npt.NDArray[Any] | None], rows: int
) -> list[dict[str, npt.NDArray[Any] | None]] | None:
    """Row i of every output (each [1, ...]), or None unless each holds `rows` rows."""
    arrays = {name: array for name, array in outputs.items() if array is not None}
    if len(arrays) != len(outputs) or any(a.shape[0] != rows for a in arrays.values()):
        return None
    return [{name: array[i : i + 1] for name, array in arrays.items()} for i in range(rows)]


def _answer(row: _Row, outputs: dict[str, npt.NDArray[Any] | None]) -> None:
    if not row.answer.done():  # its caller may have been cancelled
        row.answer.set_result(outputs)


def _fail(rows: Sequence[_Row], exc: Exception) -> None:
    for row in rows:
        if not row.answer.done():
            row.answer.set_exception(exc)


def _infer_inputs(tensors: dict[str, npt.NDArray[Any]]) -> list[InferInput]:
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
