"""The configuration every service shares, read once from `CDSFLOW_*` environment variables.

Each service's `Settings` subclasses `ServiceSettings`, adds its own fields and sets its own
`http_port` default (and `readiness_timeout_s` where it differs).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# a TCP port a service can listen on; a subclass sets its default: `http_port: HttpPort = 8081`
HttpPort = Annotated[int, Field(ge=1, le=65535)]


class ServiceSettings(BaseSettings):
    """Kafka, HTTP and EHR settings that every cdsflow service reads the same way."""

    # hide_input_in_errors: a refused secret must not be printed back in the error
    model_config = SettingsConfigDict(
        env_prefix="CDSFLOW_", extra="ignore", hide_input_in_errors=True
    )

    # The EHR's FHIR R4 base URL, http(s), without a trailing slash. No default.
    ehr_base_url: str

    kafka_bootstrap: str = "127.0.0.1:9092"
    # off for the embedded Tansu broker, which rejects InitProducerId; on for Apache Kafka
    kafka_idempotence: bool = True
    # how long a consumer's fetch waits for data; Kafka's own 500 ms would slow every hop
    kafka_fetch_max_wait_ms: int = Field(default=5, ge=0)

    http_host: str = "0.0.0.0"
    # no shared default: every service has its own port
    http_port: HttpPort

    # The most bytes of request line and headers read before a request is refused (431).
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)

    # How long `/readyz` waits for what the service depends on.
    readiness_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("ehr_base_url")
    @classmethod
    def _require_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the EHR base URL must be an http(s) URL")
        return value.rstrip("/")
