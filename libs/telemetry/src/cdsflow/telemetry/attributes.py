"""The span-attribute allowlist, enforced where spans leave the process.

Libraries (FastStream, the FastAPI instrumentation) set attributes of their own,
some of which may carry patient data (`url.full`, `url.path`, exception messages). Rather
than trust each of them, every span passes `AllowlistSpanExporter` on its way out: attributes
whose key is not on the list are dropped, so an unknown attribute fails closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status
from opentelemetry.util.types import AttributeValue

# OpenTelemetry semantic-convention keys that carry no patient data, plus our own.
ALLOWED_SPAN_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # messaging (Kafka); the message key is the patient pseudonym, never a raw id
        "messaging.system",
        "messaging.operation",
        "messaging.operation.name",
        "messaging.operation.type",
        "messaging.destination.name",
        "messaging.destination_publish.name",
        "messaging.consumer.group.name",
        "messaging.message.id",
        "messaging.message.conversation_id",
        "messaging.message.payload_size_bytes",
        "messaging.message.body.size",
        "messaging.batch.message_count",
        "messaging.kafka.message.key",
        "messaging.kafka.destination.partition",
        "messaging.kafka.message.offset",
        # http (server and client); routes are templates, never concrete paths
        "http.request.method",
        "http.method",
        "http.response.status_code",
        "http.status_code",
        "http.route",
        "url.scheme",
        "http.scheme",
        "server.address",
        "server.port",
        "network.protocol.version",
        "http.flavor",
        # rpc (Triton gRPC)
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        # errors: the type only, never the message
        "error.type",
        "exception.type",
        # cdsflow's own, all free of patient data
        "cdsflow.patient_key",
        "cdsflow.event_id",
        "cdsflow.recommendation_id",
        "cdsflow.resource_type",
        "cdsflow.notification_kind",
        "cdsflow.subscription_id",
        "cdsflow.event_number",
        "cdsflow.model.name",
        "cdsflow.model.version",
        # how many rows (events) the Triton request that answered this one carried
        "cdsflow.inference.rows",
        "cdsflow.mode",
        "cdsflow.hook",
        "cdsflow.cds_service",
        "cdsflow.card_count",
        "cdsflow.outcome",
        # a fixed label (`no-patient`, `foreign-patient`, `not-observation`, ...), never a value
        "cdsflow.reason",
        # notifications: their shape, the events and patients (keyed) they carried, and the
        # channel they came through; counts of what a search found and published
        "cdsflow.notification_shape",
        "cdsflow.payload_content",
        "cdsflow.event_count",
        "cdsflow.event_ids",
        "cdsflow.patient_keys",
        "cdsflow.channel",
        "cdsflow.gap_detected",
        "cdsflow.found",
        "cdsflow.published",
        # write-back to the EHR: tries, and whether the transaction created anything
        "cdsflow.ehr.attempts",
        "cdsflow.ehr.created",
    }
)


def allowed_attributes(
    attributes: Mapping[str, AttributeValue] | None,
    allowlist: frozenset[str] = ALLOWED_SPAN_ATTRIBUTES,
) -> dict[str, AttributeValue]:
    """Keep only allowlisted keys."""
    if not attributes:
        return {}
    return {key: value for key, value in attributes.items() if key in allowlist}


def scrubbed_span(span: ReadableSpan, allowlist: frozenset[str]) -> ReadableSpan:
    """A copy of `span` with every non-allowlisted attribute removed (span and events)."""
    events = [
        Event(event.name, allowed_attributes(event.attributes, allowlist), event.timestamp)
        for event in span.events
    ]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=allowed_attributes(span.attributes, allowlist),
        events=events,
        links=span.links,
        kind=span.kind,
        status=_status_without_description(span),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _status_without_description(span: ReadableSpan) -> Status:
    # a status description is free text (often an exception message): drop it
    return Status(span.status.status_code)


class AllowlistSpanExporter(SpanExporter):
    """Wraps an exporter; only allowlisted attributes reach it."""

    def __init__(
        self, inner: SpanExporter, allowlist: frozenset[str] = ALLOWED_SPAN_ATTRIBUTES
    ) -> None:
        self._inner = inner
        self._allowlist = allowlist

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._inner.export([scrubbed_span(span, self._allowlist) for span in spans])

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)
