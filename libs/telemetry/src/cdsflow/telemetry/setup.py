"""One call per service: traces, metrics, JSON logs and the patient pseudonymizer."""

from __future__ import annotations

import os
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdsflow.telemetry.attributes import AllowlistSpanExporter
from cdsflow.telemetry.logs import configure_json_logging
from cdsflow.telemetry.metrics import MetricsRegistry
from cdsflow.telemetry.pseudonyms import PatientKeyer


class TelemetrySettings(BaseSettings):
    """Read from `CDSFLOW_*`; the OTLP exporter reads the standard `OTEL_*` itself."""

    # hide_input_in_errors: a refused key must not be printed back in the error
    model_config = SettingsConfigDict(
        env_prefix="CDSFLOW_", extra="ignore", hide_input_in_errors=True
    )

    # The HMAC key for patient pseudonyms, the same in every service (the Kafka key and the
    # CDS Hooks lookup must agree). No default: a deployment must choose one.
    pseudonym_key: SecretStr = Field(min_length=16)
    log_level: str = "INFO"


@dataclass(frozen=True)
class Telemetry:
    """What a service needs from telemetry, built once in its lifespan and injected."""

    service_name: str
    tracer_provider: TracerProvider
    tracer: trace.Tracer
    metrics: MetricsRegistry
    patient_keyer: PatientKeyer

    def shutdown(self) -> None:
        """Flush and stop span export."""
        self.tracer_provider.shutdown()


def setup_telemetry(
    service_name: str,
    settings: TelemetrySettings,
    *,
    extra_span_exporter: SpanExporter | None = None,
    service_version: str = "0.1.0",
) -> Telemetry:
    """Traces (OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), metrics, JSON logs.

    Every exporter is wrapped in the attribute allowlist. `extra_span_exporter` is exported
    synchronously (tests pass an in-memory one).
    """
    configure_json_logging(service_name, settings.log_level)
    resource = Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: service_version})
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        provider.add_span_processor(BatchSpanProcessor(AllowlistSpanExporter(OTLPSpanExporter())))
    if extra_span_exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(AllowlistSpanExporter(extra_span_exporter)))
    return Telemetry(
        service_name=service_name,
        tracer_provider=provider,
        tracer=provider.get_tracer(f"cdsflow.{service_name}"),
        metrics=MetricsRegistry(service_name),
        patient_keyer=PatientKeyer(settings.pseudonym_key.get_secret_value()),
    )
