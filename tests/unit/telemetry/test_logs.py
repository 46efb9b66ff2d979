from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from cdsflow.telemetry.logs import configure_json_logging


def test_log_lines_are_json_with_trace_and_span_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_json_logging("unit")
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("op") as span:
        logging.getLogger("cdsflow.unit").info("event accepted")
        context = span.get_span_context()
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["message"] == "event accepted"
    assert line["service"] == "unit"
    assert line["level"] == "INFO"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
