"""The listener's configuration, read once from `CDSFLOW_*` environment variables.

The pseudonym key and log level are read by `cdsflow.telemetry.TelemetrySettings`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdsflow.contracts import CLINICAL_EVENTS

ONE_MEBIBYTE = 1024 * 1024
_MIN_SECRET_CHARS = 16


class Settings(BaseSettings):
    """Everything the listener needs to accept notifications and publish clinical events."""

    # hide_input_in_errors: a refused secret must not be printed back in the error
    model_config = SettingsConfigDict(
        env_prefix="CDSFLOW_", extra="ignore", hide_input_in_errors=True
    )

    # The shared secret the EHR sends as `Authorization: Bearer <secret>` (the Subscription's
    # `channel.header`). No default: a deployment must choose one.
    channel_secret: SecretStr
    # The EHR's FHIR R4 base URL; part of every event id and of `ClinicalEvent.source`.
    ehr_base_url: str

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotence: bool = True
    clinical_events_topic: str = CLINICAL_EVENTS

    http_host: str = "0.0.0.0"
    http_port: int = 8081

    max_notification_bytes: int = Field(default=ONE_MEBIBYTE, gt=0)
    # How long a notification may wait for the broker's ack before the EHR is told to retry.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # `Retry-After` on a 503 answer.
    retry_after_s: int = Field(default=5, ge=0)
    # How long `/readyz` waits for the broker to answer.
    readiness_timeout_s: float = Field(default=1.0, gt=0)

    @field_validator("channel_secret")
    @classmethod
    def _refuse_weak_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) < _MIN_SECRET_CHARS or secret.strip() != secret:
            raise ValueError(
                f"the channel secret must be at least {_MIN_SECRET_CHARS} characters, "
                "without surrounding whitespace"
            )
        return value

    @field_validator("ehr_base_url")
    @classmethod
    def _require_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the EHR base URL must be an http(s) URL")
        return value.rstrip("/")
