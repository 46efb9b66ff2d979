"""The writeback's configuration, read once from `CDSFLOW_*` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdsflow.contracts import RECOMMENDATIONS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CDSFLOW_", extra="ignore")

    # common to every service
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotence: bool = True
    kafka_fetch_max_wait_ms: int = Field(default=5, ge=0)
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8083, ge=1, le=65535)
    ehr_base_url: str
    pseudonym_key: SecretStr = Field(min_length=16)
    log_level: str = "INFO"

    # the writeback's own
    recommendations_topic: str = RECOMMENDATIONS
    consumer_group: str = "cdsflow-writeback"
    writeback_enabled: bool = True
    # after the EHR client's own retries fail with an outage, wait this long, then redeliver
    writeback_retry_pause_s: float = Field(default=5.0, ge=0)
    ehr_timeout_s: float = Field(default=10.0, gt=0)
    store_max_patients: int = Field(default=100_000, ge=1)

    @field_validator("ehr_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the EHR base URL must be an http(s) URL")
        return value.rstrip("/")
