"""`ClientSpans`, the EHR client's CLIENT span per request: named by the method, the stable
HTTP attributes only (never the URL, which can hold a patient's id), the trace carried to the
EHR in `traceparent`, and an error answer or a failed request marked as an error by its type.
The EHR is an `httpx.MockTransport` (what reaches it is what the test checks)."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cdsflow.service.client_spans import ClientSpans

URL = "https://ehr.example.org:8443/fhir/Patient/pat-123?_count=1"


def recorded() -> tuple[trace.Tracer, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    return provider.get_tracer("test"), spans


async def test_a_request_is_one_client_span_child_of_the_current_one_carried_to_the_ehr() -> None:
    tracer, spans = recorded()
    seen: list[httpx.Request] = []

    def ehr(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201)

    transport = ClientSpans(httpx.MockTransport(ehr), tracer)
    async with httpx.AsyncClient(transport=transport) as http:
        with tracer.start_as_current_span("consume") as parent:
            answer = await http.post(URL, content=b"{}")

    assert answer.status_code == 201
    consume, client = sorted(spans.get_finished_spans(), key=lambda s: s.kind is SpanKind.CLIENT)
    assert (client.name, client.kind) == ("POST", SpanKind.CLIENT)
    assert client.parent is not None
    assert client.parent.span_id == parent.get_span_context().span_id
    assert dict(client.attributes or {}) == {
        "http.request.method": "POST",
        "server.address": "ehr.example.org",
        "server.port": 8443,
        "url.scheme": "https",
        "network.protocol.version": "1.1",
        "http.response.status_code": 201,
    }
    assert client.status.status_code is StatusCode.UNSET
    trace_id = f"{client.context.trace_id:032x}"
    span_id = f"{client.context.span_id:016x}"
    assert seen[0].headers["traceparent"].startswith(f"00-{trace_id}-{span_id}-")
    assert consume.name == "consume"


async def test_an_error_answer_marks_the_span_with_its_status() -> None:
    tracer, spans = recorded()
    transport = ClientSpans(httpx.MockTransport(lambda _: httpx.Response(503)), tracer)
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get("http://ehr.example.org/fhir/metadata")).status_code == 503

    (client,) = spans.get_finished_spans()
    assert client.status.status_code is StatusCode.ERROR
    assert (client.attributes or {})["error.type"] == "503"
    assert (client.attributes or {})["server.port"] == 80


async def test_a_failed_request_marks_the_span_with_the_errors_type_only() -> None:
    tracer, spans = recorded()

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    transport = ClientSpans(httpx.MockTransport(unreachable), tracer)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(URL)

    (client,) = spans.get_finished_spans()
    assert client.status.status_code is StatusCode.ERROR
    assert (client.attributes or {})["error.type"] == "ConnectError"
    assert not client.events  # no exception event: its message holds the URL
    assert not any("pat-123" in str(value) for value in _everything(client))


def _everything(span: ReadableSpan) -> list[object]:
    return [span.name, *(span.attributes or {}).values(), span.status.description]
