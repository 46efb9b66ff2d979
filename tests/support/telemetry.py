"""Telemetry for a service under test, with its finished spans kept in memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry


@contextmanager
def recording_telemetry(
    service_name: str, pseudonym_key: str | SecretStr
) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    """`setup_telemetry` as the service does it, plus an in-memory exporter; shut down after."""
    spans = InMemorySpanExporter()
    key = pseudonym_key if isinstance(pseudonym_key, SecretStr) else SecretStr(pseudonym_key)
    telemetry = setup_telemetry(
        service_name, TelemetrySettings(pseudonym_key=key), extra_span_exporter=spans
    )
    try:
        yield telemetry, spans
    finally:
        telemetry.shutdown()
