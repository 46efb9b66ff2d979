"""A small OTLP/HTTP trace receiver: the trace backend of `cdsflow up`/`demo` and the tests.

It accepts protobuf bodies (the OpenTelemetry Python exporter) and JSON bodies (Triton's
OpenTelemetry mode, whose ids are hex strings), and keeps the spans in memory.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cdsflow.runtime.loopback_server import LoopbackServer


@dataclass(frozen=True)
class CollectedEvent:
    """A span event (an exception recorded, a Triton timestamp): its name and attributes."""

    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class CollectedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    attributes: dict[str, Any]
    start_unix_nano: int = 0
    end_unix_nano: int = 0
    # the rest of what was exported, so that all of it can be checked for patient data
    events: tuple[CollectedEvent, ...] = ()
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return max(0, self.end_unix_nano - self.start_unix_nano) / 1e9


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _json_value(value: dict[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "intValue", "doubleValue"):
        if key in value:
            return int(value[key]) if key == "intValue" else value[key]
    return None


def _json_attributes(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["key"]: _json_value(a.get("value", {})) for a in attributes}


def spans_from_protobuf(body: bytes) -> list[CollectedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _any_value(a.value) for a in resource_spans.resource.attributes}
        service = resource.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    CollectedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        service=str(service),
                        attributes={a.key: _any_value(a.value) for a in span.attributes},
                        start_unix_nano=span.start_time_unix_nano,
                        end_unix_nano=span.end_time_unix_nano,
                        events=tuple(
                            CollectedEvent(
                                event.name, {a.key: _any_value(a.value) for a in event.attributes}
                            )
                            for event in span.events
                        ),
                        status_message=span.status.message,
                        resource=resource,
                    )
                )
    return spans


def spans_from_json(body: bytes) -> list[CollectedSpan]:
    document = json.loads(body)
    spans = []
    for resource_spans in document.get("resourceSpans", []):
        resource = _json_attributes(resource_spans.get("resource", {}).get("attributes", []))
        service = resource.get("service.name", "")
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                spans.append(
                    CollectedSpan(
                        trace_id=str(span.get("traceId", "")).lower(),
                        span_id=str(span.get("spanId", "")).lower(),
                        parent_span_id=str(span.get("parentSpanId", "")).lower(),
                        name=str(span.get("name", "")),
                        service=str(service),
                        attributes=_json_attributes(span.get("attributes", [])),
                        start_unix_nano=int(span.get("startTimeUnixNano", 0)),
                        end_unix_nano=int(span.get("endTimeUnixNano", 0)),
                        events=tuple(
                            CollectedEvent(
                                str(event.get("name", "")),
                                _json_attributes(event.get("attributes", [])),
                            )
                            for event in span.get("events", [])
                        ),
                        status_message=str(span.get("status", {}).get("message", "")),
                        resource=resource,
                    )
                )
    return spans


class TraceCollector:
    """Keeps every span it receives; thread-safe."""

    def __init__(self) -> None:
        self._spans: list[CollectedSpan] = []
        self._lock = threading.Lock()
        self._server: LoopbackServer | None = None
        self.url = ""

    def spans(self) -> list[CollectedSpan]:
        with self._lock:
            return list(self._spans)

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()

    def trace(self, trace_id: str) -> list[CollectedSpan]:
        return [span for span in self.spans() if span.trace_id == trace_id]

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type", "")
        parse = spans_from_json if "json" in content_type else spans_from_protobuf
        try:
            spans = parse(body)
        except (DecodeError, ValueError, KeyError, TypeError):
            return Response(status_code=400)
        with self._lock:
            self._spans.extend(spans)
        if "json" in content_type:
            return Response(b"{}", media_type="application/json")
        return Response(b"", media_type="application/x-protobuf")

    def start(self, timeout_s: float = 10) -> str:
        """Serve `POST /v1/traces` on a free loopback port in a thread; returns the base URL."""
        app = Starlette(routes=[Route("/v1/traces", self._receive, methods=["POST"])])
        self._server = LoopbackServer(app, "otlp")
        self.url = self._server.start(timeout_s)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
