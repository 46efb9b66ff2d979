"""W3C trace context across Kafka headers and gRPC metadata."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace


def trace_headers(span: trace.Span | None = None) -> dict[str, str]:
    """`traceparent`/`tracestate` for `span`, else for the current span, ready to send.

    A client or producer span that nothing runs inside need not be made current (attached to
    the context and detached again) only so that its headers can be made: pass it here."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span) if span is not None else None)
    return carrier


def context_from_headers(headers: Mapping[str, str | bytes]) -> otel_context.Context:
    """The trace context that arrived in message headers."""
    carrier = {
        key.lower(): value.decode() if isinstance(value, bytes) else value
        for key, value in headers.items()
    }
    return propagate.extract(carrier)
