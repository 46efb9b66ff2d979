"""cdsflow telemetry: traces, metrics, JSON logs and patient pseudonyms, set up in one call."""

from cdsflow.telemetry.attributes import (
    ALLOWED_SPAN_ATTRIBUTES,
    AllowlistSpanExporter,
    allowed_attributes,
)
from cdsflow.telemetry.metrics import MetricsRegistry
from cdsflow.telemetry.propagation import context_from_headers, trace_headers
from cdsflow.telemetry.pseudonyms import PatientKeyer
from cdsflow.telemetry.setup import Telemetry, TelemetrySettings, setup_telemetry

__all__ = [
    "ALLOWED_SPAN_ATTRIBUTES",
    "AllowlistSpanExporter",
    "MetricsRegistry",
    "PatientKeyer",
    "Telemetry",
    "TelemetrySettings",
    "allowed_attributes",
    "context_from_headers",
    "setup_telemetry",
    "trace_headers",
]
