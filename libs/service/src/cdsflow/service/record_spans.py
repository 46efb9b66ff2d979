"""Each consumed record keeps its own trace while it is handled in a batch.

A batch consumer (`lane_batches`) receives records in batches, but a trace follows one
clinical change: so every record gets its own CONSUMER span (`<topic> process`), continuing
the `traceparent` in its Kafka headers, and everything done for it (the EHR, the Triton call,
the publish) happens inside that span. A publish is a PRODUCER span (`<topic> publish`) whose
context goes on in the published message's headers, so the next service continues the same
trace. A broker that consumes this way is built without FastStream's telemetry middleware
(`build_broker(..., traced=False)`), which would make one span per batch.

Spans cost CPU on every record, so each is made the cheap way: started with all of its
attributes in one call, and only the CONSUMER span is made current (the EHR's and Triton's
client spans are its children); a PRODUCER span is never current, its headers are made from
the span itself (`trace_headers(span)`).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from cdsflow.telemetry import context_from_headers

MESSAGING_SYSTEM = "kafka"


def record_consumer_span(
    tracer: trace.Tracer, record: ConsumerRecord[bytes, bytes]
) -> AbstractContextManager[Span]:
    """The record's CONSUMER span, current for the block (and ended after it), child of the
    producer's span."""
    headers = {key: value for key, value in record.headers or () if value is not None}
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation": "process",
        "messaging.destination.name": record.topic,
        "messaging.kafka.destination.partition": record.partition,
        "messaging.kafka.message.offset": record.offset,
        "messaging.message.body.size": len(record.value or b""),
    }
    if record.key is not None:  # the patient key (a keyed hash)
        attributes["messaging.kafka.message.key"] = record.key.decode(errors="replace")
    span = tracer.start_span(
        f"{record.topic} process",
        context=context_from_headers(headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )
    return trace.use_span(
        span, end_on_exit=True, record_exception=False, set_status_on_exception=False
    )


def publish_span(
    tracer: trace.Tracer, topic: str, attributes: Mapping[str, str] | None = None
) -> Span:
    """A PRODUCER span for one publish, child of the current span, with the messaging
    attributes and `attributes` (set when it starts, in one go). Not made current: use it as
    `with publish_span(...) as span:` (ended after the block, its status ERROR when the block
    raises) and send `trace_headers(span)` with the message."""
    return tracer.start_span(
        f"{topic} publish",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation": "publish",
            "messaging.destination.name": topic,
            **(attributes or {}),
        },
        record_exception=False,
    )
