"""The listener's EHR read client (`ehr_reads.ehr_http_client`): each read a CLIENT span made
by `cdsflow.service.ClientSpans`, and an answer over the limit refused (its span an error of
that type). The EHR is an `httpx.MockTransport`."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cdsflow.listener.ehr_reads import ehr_http_client
from cdsflow.service import AnswerTooLarge

URL = "http://ehr.example.org/fhir/Observation/obs-1"


def ehr(request: httpx.Request) -> httpx.Response:
    """A small answer for obs-1, one over the client's 100 bytes otherwise; it says whether
    the request carried a `traceparent`."""
    size = 10 if request.url.path.endswith("obs-1") else 1_000
    seen = "yes" if "traceparent" in request.headers else "no"
    return httpx.Response(200, content=b"x" * size, headers={"traceparent-seen": seen})


async def test_each_read_is_a_client_span_and_a_large_answer_is_refused() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    client = ehr_http_client(
        5.0, 100, transport=httpx.MockTransport(ehr), tracer=provider.get_tracer("test")
    )
    async with client:
        answer = await client.get(URL)
        with pytest.raises(AnswerTooLarge):
            await client.get("http://ehr.example.org/fhir/Observation/obs-2")

    assert answer.headers["traceparent-seen"] == "yes"
    read, refused = spans.get_finished_spans()
    assert (read.name, read.kind) == ("GET", SpanKind.CLIENT)
    assert (read.attributes or {})["http.response.status_code"] == 200
    assert refused.status.status_code is StatusCode.ERROR
    assert (refused.attributes or {})["error.type"] == "AnswerTooLarge"
