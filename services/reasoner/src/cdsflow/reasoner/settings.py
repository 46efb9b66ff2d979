"""The reasoner's configuration, read once from `CDSFLOW_*` environment variables.

The pseudonym key and log level are read by `cdsflow.telemetry.TelemetrySettings`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cdsflow.contracts import CLINICAL_EVENTS, RECOMMENDATIONS


class Settings(BaseSettings):
    """Everything the reasoner needs to turn clinical events into recommendations."""

    model_config = SettingsConfigDict(
        env_prefix="CDSFLOW_", extra="ignore", hide_input_in_errors=True
    )

    # The EHR's FHIR R4 base URL: the patient's recent vital signs are searched there.
    ehr_base_url: str

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotence: bool = True
    kafka_fetch_max_wait_ms: int = Field(default=5, ge=0)
    clinical_events_topic: str = CLINICAL_EVENTS
    recommendations_topic: str = RECOMMENDATIONS
    consumer_group: str = "cdsflow-reasoner"

    http_host: str = "0.0.0.0"
    http_port: int = 8082

    # Triton's gRPC endpoint, host:port
    triton_grpc_url: str = "127.0.0.1:8001"
    model_name: str = "deterioration_score"
    # model names, or name:version pairs, whose recommendations are recorded but never shown
    shadow_models: Annotated[frozenset[str], NoDecode] = frozenset()

    # How far back, before the event's Observation, other vital signs still count.
    vitals_lookback_hours: float = Field(default=24.0, gt=0)
    # Per-call timeouts of Triton inference and EHR requests.
    inference_timeout_s: float = Field(default=10.0, gt=0)
    ehr_timeout_s: float = Field(default=10.0, gt=0)
    # How long an event is retried while Triton or the EHR is unavailable before it is
    # handed back to Kafka (not committed) to be consumed again.
    dependency_retry_s: float = Field(default=30.0, ge=0)
    # How long `/readyz` waits for the broker and Triton.
    readiness_timeout_s: float = Field(default=2.0, gt=0)

    card_source_label: str = "cdsflow deterioration score"
    card_source_url: str = ""

    @field_validator("shadow_models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return frozenset(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("ehr_base_url")
    @classmethod
    def _require_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the EHR base URL must be an http(s) URL")
        return value.rstrip("/")
