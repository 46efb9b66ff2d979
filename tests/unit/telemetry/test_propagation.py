"""W3C trace context headers: of the current span, or of a span that is not current."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from cdsflow.telemetry import context_from_headers, trace_headers


def _traceparent(span: trace.Span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_headers_of_a_span_that_is_not_current_name_that_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("consumer") as parent:
        child = tracer.start_span("client")
        headers = trace_headers(child)
        # the child was never made current: the current span is still the parent
        assert trace.get_current_span() is parent
        assert trace_headers() == {"traceparent": _traceparent(parent)}
        child.end()
    assert headers == {"traceparent": _traceparent(child)}
    assert child.get_span_context().trace_id == parent.get_span_context().trace_id
    continued = trace.get_current_span(context_from_headers(headers)).get_span_context()
    assert (continued.trace_id, continued.span_id) == (
        child.get_span_context().trace_id,
        child.get_span_context().span_id,
    )


def test_no_current_span_no_headers() -> None:
    assert trace_headers() == {}
