"""Each clinical event keeps its own trace while it is handled in a batch.

The broker hands the reasoner records in batches, but a trace follows one clinical change: so
every record gets its own CONSUMER span (`<topic> process`), continuing the `traceparent` in
its Kafka headers, and everything done for it (the EHR, the Triton call, the publish) happens
inside that span. A publish is a PRODUCER span (`<topic> publish`) whose context goes on in
the published message's headers, so the next service continues the same trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from aiokafka import ConsumerRecord
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from cdsflow.telemetry import context_from_headers, trace_headers

MESSAGING_SYSTEM = "kafka"


@contextmanager
def event_consumer_span(
    tracer: trace.Tracer, record: ConsumerRecord[bytes, bytes]
) -> Iterator[Span]:
    """The record's CONSUMER span, current for the block, child of the producer's span."""
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
    with tracer.start_as_current_span(
        f"{record.topic} process",
        context=context_from_headers(headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


@contextmanager
def publish_span(
    tracer: trace.Tracer, topic: str, attributes: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """A PRODUCER span for one publish, with the messaging attributes and `attributes` (set
    when it starts, in one go); yields the headers that carry its trace context."""
    with tracer.start_as_current_span(
        f"{topic} publish",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation": "publish",
            "messaging.destination.name": topic,
            **(attributes or {}),
        },
        record_exception=False,
    ):
        yield trace_headers()
