from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from cdsflow.telemetry import AllowlistSpanExporter


def _tracer() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AllowlistSpanExporter(exporter)))
    return provider, exporter


def test_unknown_attributes_are_dropped_known_ones_kept() -> None:
    provider, exporter = _tracer()
    with provider.get_tracer("t").start_as_current_span("PUT /fhir") as span:
        span.set_attribute("http.route", "/fhir/{resource_type}/{resource_id}")
        span.set_attribute("url.full", "http://x/fhir/Patient/123?name=Smith")
        span.set_attribute("patient.name", "Jane Smith")
        span.set_attribute("cdsflow.patient_key", "abc")
    (exported,) = exporter.get_finished_spans()
    assert dict(exported.attributes or {}) == {
        "http.route": "/fhir/{resource_type}/{resource_id}",
        "cdsflow.patient_key": "abc",
    }


def test_exception_events_keep_type_not_message_and_status_loses_text() -> None:
    provider, exporter = _tracer()
    with provider.get_tracer("t").start_as_current_span("work") as span:
        span.record_exception(ValueError("patient Jane Smith born 1950-01-01"))
        span.set_status(Status(StatusCode.ERROR, "Jane Smith"))
    (exported,) = exporter.get_finished_spans()
    (event,) = exported.events
    assert dict(event.attributes or {}) == {"exception.type": "ValueError"}
    assert exported.status.status_code == StatusCode.ERROR
    assert not exported.status.description
    assert "Jane" not in repr(exported.to_json())
