"""W3C trace context across Kafka headers and gRPC metadata."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate


def trace_headers() -> dict[str, str]:
    """`traceparent`/`tracestate` for the current span, ready to send."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from_headers(headers: Mapping[str, str | bytes]) -> otel_context.Context:
    """The trace context that arrived in message headers."""
    carrier = {
        key.lower(): value.decode() if isinstance(value, bytes) else value
        for key, value in headers.items()
    }
    return propagate.extract(carrier)
