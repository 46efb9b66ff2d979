from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cdsflow.runtime.scenario import describe_trace
from cdsflow.runtime.trace_collector import CollectedEvent, spans_from_json, spans_from_protobuf


def test_protobuf_export_is_read_with_hex_ids_and_service() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "listener"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("parent") as parent:
        parent.set_attribute("cdsflow.patient_key", "k1")
        parent.set_attribute("cdsflow.patient_keys", ["k1", "k2"])
        with tracer.start_as_current_span("child"):
            pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    spans = {span.name: span for span in spans_from_protobuf(body)}
    trace_id = format(parent.get_span_context().trace_id, "032x")
    assert spans["parent"].trace_id == trace_id == spans["child"].trace_id
    assert spans["child"].parent_span_id == spans["parent"].span_id
    assert spans["parent"].service == "listener"
    assert spans["parent"].attributes == {
        "cdsflow.patient_key": "k1",
        "cdsflow.patient_keys": ["k1", "k2"],
    }
    assert spans["parent"].end_unix_nano >= spans["child"].end_unix_nano > 0
    assert spans["parent"].duration_s >= spans["child"].duration_s
    assert describe_trace(list(spans.values())) == ["listener: parent", "  listener: child"]


def test_json_export_as_triton_sends_it() -> None:
    body = json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": "triton"}}]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "0AF7651916CD43DD8448EB211C80319C",
                                    "spanId": "B7AD6B7169203331",
                                    "parentSpanId": "00F067AA0BA902B7",
                                    "name": "InferRequest",
                                    "startTimeUnixNano": "1000000000",
                                    "endTimeUnixNano": "1250000000",
                                    "attributes": [
                                        {"key": "triton.model_name", "value": {"stringValue": "m"}},
                                        {"key": "triton.model_version", "value": {"intValue": "1"}},
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()
    (span,) = spans_from_json(body)
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent_span_id == "00f067aa0ba902b7"
    assert span.service == "triton"
    assert span.attributes == {"triton.model_name": "m", "triton.model_version": 1}
    assert span.duration_s == 0.25


def test_events_status_and_resource_are_kept_so_that_they_can_be_checked() -> None:
    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "writeback", "service.instance.id": "i-1"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("failing") as span:
        span.add_event("retried", {"attempt": 2})
        span.set_status(StatusCode.ERROR, "the EHR refused the write")
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()

    (collected,) = spans_from_protobuf(body)

    assert collected.events == (CollectedEvent("retried", {"attempt": 2}),)
    assert collected.status_message == "the EHR refused the write"
    assert collected.resource["service.instance.id"] == "i-1"

    as_json = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "host", "value": {"stringValue": "h"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "0AF7651916CD43DD8448EB211C80319C",
                                "spanId": "B7AD6B7169203331",
                                "name": "compute",
                                "events": [
                                    {
                                        "name": "COMPUTE_START",
                                        "attributes": [
                                            {"key": "n", "value": {"intValue": "3"}},
                                        ],
                                    }
                                ],
                                "status": {"code": 2, "message": "failed"},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    (from_triton,) = spans_from_json(json.dumps(as_json).encode())
    assert from_triton.events == (CollectedEvent("COMPUTE_START", {"n": 3}),)
    assert from_triton.status_message == "failed"
    assert from_triton.resource == {"host": "h"}
