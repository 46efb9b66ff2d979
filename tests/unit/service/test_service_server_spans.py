"""The hot paths' own SERVER spans (`cdsflow.service.server_spans`), in-process over ASGI (no
network): they continue the caller's trace, are current in the handler, carry the route's
template and the status, and leave every other path to the OpenTelemetry instrumentation."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI, Response
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cdsflow.service.server_spans import ServerSpans

PREFIX = "/fhir/notifications/rest-hook"
OTHER_PREFIX = "/cds-services"
CALLER_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{CALLER_TRACE_ID:032x}-{CALLER_SPAN_ID:016x}-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def app(spans: InMemorySpanExporter) -> FastAPI:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    app = FastAPI()

    @app.put(PREFIX + "/{resource_type}/{resource_id}")
    async def notified(resource_type: str, resource_id: str) -> Response:
        # what the handlers do: attributes on the current span
        trace.get_current_span().set_attribute("cdsflow.resource_type", resource_type)
        return Response(status_code=200 if resource_id != "broken" else 503)

    @app.post(OTHER_PREFIX + "/{service_id}")
    async def hook(service_id: str) -> dict[str, list[str]]:
        return {"cards": []}

    @app.get("/subscriptions")
    async def subscriptions() -> list[str]:
        return []

    app.add_middleware(
        ServerSpans, tracer=provider.get_tracer("test"), path_prefixes=(PREFIX, OTHER_PREFIX)
    )
    return app


async def put(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://listener.test") as client:
        return (await client.put(path, content=b"{}", headers=headers)).status_code


def only_span(spans: InMemorySpanExporter) -> ReadableSpan:
    (span,) = spans.get_finished_spans()
    return span


async def test_a_notification_continues_the_callers_trace(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    assert await put(app, f"{PREFIX}/Observation/o-1", {"traceparent": TRACEPARENT}) == 200
    span = only_span(spans)
    assert span.kind is SpanKind.SERVER
    assert span.name == f"PUT {PREFIX}/{{resource_type}}/{{resource_id}}"
    assert span.context is not None
    assert span.context.trace_id == CALLER_TRACE_ID
    assert span.parent is not None
    assert span.parent.span_id == CALLER_SPAN_ID
    assert dict(span.attributes or {}) == {
        "http.request.method": "PUT",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "cdsflow.resource_type": "Observation",  # set by the handler: the span was current
        "http.response.status_code": 200,
        "http.route": f"{PREFIX}/{{resource_type}}/{{resource_id}}",
    }
    assert span.status.status_code is StatusCode.UNSET


async def test_each_prefix_is_traced_here(app: FastAPI, spans: InMemorySpanExporter) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://writeback.test") as client:
        assert (await client.post(f"{OTHER_PREFIX}/risk", content=b"{}")).status_code == 200
    span = only_span(spans)
    assert span.name == f"POST {OTHER_PREFIX}/{{service_id}}"
    assert (span.attributes or {})["http.route"] == f"{OTHER_PREFIX}/{{service_id}}"


async def test_without_a_traceparent_a_trace_starts_here(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    assert await put(app, f"{PREFIX}/Observation/o-1") == 200
    span = only_span(spans)
    assert span.parent is None
    assert span.context is not None
    assert span.context.trace_id != CALLER_TRACE_ID


async def test_a_5xx_answer_is_an_error(app: FastAPI, spans: InMemorySpanExporter) -> None:
    assert await put(app, f"{PREFIX}/Observation/broken") == 503
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "503"


async def test_a_path_no_route_matches_is_named_by_its_method_only(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    assert await put(app, f"{PREFIX}/Observation/o-1/extra") == 404
    span = only_span(spans)
    assert span.name == "PUT"
    assert "http.route" not in (span.attributes or {})


async def test_other_paths_are_not_traced_here(app: FastAPI, spans: InMemorySpanExporter) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://listener.test") as client:
        assert (await client.get("/subscriptions")).status_code == 200
    assert spans.get_finished_spans() == ()
