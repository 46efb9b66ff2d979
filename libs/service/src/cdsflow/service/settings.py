"""The configuration every service shares, read once from `CDSFLOW_*` environment variables.

Each service's `Settings` subclasses `ServiceSettings`, adds its own fields and sets its own
`http_port` default (and `readiness_timeout_s` where it differs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cdsflow.fhir import UnusableSigningKey, load_signing_key
from cdsflow.service.kafka_security import (
    KafkaSaslMechanism,
    KafkaSecurityProtocol,
    check_kafka_security,
)

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

    # How cdsflow authenticates to the EHR's FHIR API (`cdsflow.service.ehr_auth`):
    # - `none`: no Authorization header;
    # - `bearer`: `CDSFLOW_EHR_BEARER_TOKEN` on every request;
    # - `smart-backend`: SMART Backend Services: a token from the EHR's token endpoint
    #   (`CDSFLOW_EHR_TOKEN_URL`, else found in `{base}/.well-known/smart-configuration`),
    #   asked for with a client assertion signed by `CDSFLOW_EHR_PRIVATE_KEY_FILE` (PEM, RSA
    #   for RS384 or EC P-384 for ES384) whose public key the EHR knows as
    #   `CDSFLOW_EHR_KEY_ID` for client `CDSFLOW_EHR_CLIENT_ID`, with `CDSFLOW_EHR_SCOPES`.
    ehr_auth: Literal["none", "bearer", "smart-backend"] = "none"
    ehr_bearer_token: SecretStr | None = None
    ehr_client_id: str | None = None
    ehr_private_key_file: Path | None = None
    ehr_key_id: str | None = None
    # space-separated SMART scopes; the default reads (a service that writes sets its own)
    ehr_scopes: str = "system/*.read"
    ehr_token_url: str | None = None

    kafka_bootstrap: str = "127.0.0.1:9092"
    # off for the embedded Tansu broker, which rejects InitProducerId; on for Apache Kafka
    kafka_idempotence: bool = True
    # how long a consumer's fetch waits for data; Kafka's own 500 ms would slow every hop
    kafka_fetch_max_wait_ms: int = Field(default=5, ge=0)
    # How every Kafka client of the service connects (`cdsflow.service.kafka_security`):
    # PLAINTEXT (the default, and the embedded broker), SSL, SASL_PLAINTEXT or SASL_SSL.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    # PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); unset: the
    # system's CAs. Read at start: a missing or unreadable file stops the service.
    kafka_ssl_ca_file: Path | None = None
    # SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (username and password) or OAUTHBEARER
    # (client credentials from CDSFLOW_KAFKA_OAUTH_TOKEN_URL for CDSFLOW_KAFKA_OAUTH_CLIENT_ID,
    # whose client secret is CDSFLOW_KAFKA_SASL_PASSWORD, with CDSFLOW_KAFKA_OAUTH_SCOPE).
    kafka_sasl_mechanism: KafkaSaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_oauth_token_url: str | None = None
    kafka_oauth_client_id: str | None = None
    # space-separated; empty: none asked for
    kafka_oauth_scope: str | None = None

    http_host: str = "0.0.0.0"
    # no shared default: every service has its own port
    http_port: HttpPort

    # The most bytes of request line and headers read before a request is refused (431).
    max_header_bytes: int = Field(default=32 * 1024, ge=1024)

    # How long an idle kept-alive connection stays open. Longer than the clients and load
    # balancers in front keep theirs (60 s in nginx's and the cloud balancers' defaults, 5-15 s
    # in HTTP client libraries), so the client gives a connection up first: a server that
    # closes one as a client reuses it makes that request fail with no answer.
    http_keep_alive_s: float = Field(default=75.0, gt=0)

    # How long `/readyz` waits for what the service depends on.
    readiness_timeout_s: float = Field(default=2.0, gt=0)

    # Python's cyclic garbage collector runs a young-generation collection after this many
    # net allocations of container objects (Python's own default is 700; the older
    # generations keep their thresholds). Each event or hook call makes many short-lived
    # objects: with a larger threshold most die before a collection, far fewer are promoted,
    # and the collections of the older generations, which pause the service (the reasoner's
    # walk every held patient's context), become rare. Set by `serve` for the whole process.
    gc_young_threshold: int = Field(default=20_000, ge=1)

    @field_validator("ehr_base_url")
    @classmethod
    def _require_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("the EHR base URL must be an http(s) URL")
        return value.rstrip("/")

    @field_validator(
        "ehr_bearer_token",
        "ehr_client_id",
        "ehr_private_key_file",
        "ehr_key_id",
        "ehr_token_url",
        "kafka_ssl_ca_file",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_oauth_token_url",
        "kafka_oauth_client_id",
        "kafka_oauth_scope",
        mode="before",
    )
    @classmethod
    def _unset_when_empty(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _ehr_auth_is_complete(self) -> ServiceSettings:
        if self.ehr_auth != "bearer" and self.ehr_bearer_token is not None:
            raise ValueError("CDSFLOW_EHR_BEARER_TOKEN is set but CDSFLOW_EHR_AUTH is not `bearer`")
        if self.ehr_auth != "smart-backend" and self.ehr_private_key_file is not None:
            raise ValueError(
                "CDSFLOW_EHR_PRIVATE_KEY_FILE is set but CDSFLOW_EHR_AUTH is not `smart-backend`"
            )
        if self.ehr_auth == "bearer":
            token = self.ehr_bearer_token.get_secret_value() if self.ehr_bearer_token else ""
            if not token or token.strip() != token or " " in token:
                raise ValueError(
                    "CDSFLOW_EHR_AUTH=bearer needs CDSFLOW_EHR_BEARER_TOKEN: one token, "
                    "without whitespace"
                )
        if self.ehr_auth == "smart-backend":
            self._check_smart_backend()
        return self

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> ServiceSettings:
        check_kafka_security(self)
        return self

    def _check_smart_backend(self) -> None:
        key_file, key_id = self.ehr_private_key_file, self.ehr_key_id
        missing = [
            name
            for name, value in (
                ("CDSFLOW_EHR_CLIENT_ID", self.ehr_client_id),
                ("CDSFLOW_EHR_PRIVATE_KEY_FILE", key_file),
                ("CDSFLOW_EHR_KEY_ID", key_id),
            )
            if value is None
        ]
        if missing or key_file is None or key_id is None:
            raise ValueError(f"CDSFLOW_EHR_AUTH=smart-backend needs {', '.join(missing)}")
        if not self.ehr_scopes.split():
            raise ValueError("CDSFLOW_EHR_AUTH=smart-backend needs CDSFLOW_EHR_SCOPES")
        token_url = self.ehr_token_url
        if token_url is not None:
            if not token_url.startswith(("http://", "https://")):
                raise ValueError("CDSFLOW_EHR_TOKEN_URL must be an http(s) URL")
            if self.ehr_base_url.startswith("https://") and token_url.startswith("http://"):
                raise ValueError("CDSFLOW_EHR_TOKEN_URL must be https when the EHR is https")
        try:
            load_signing_key(key_file, key_id)
        except UnusableSigningKey as exc:
            raise ValueError(f"CDSFLOW_EHR_PRIVATE_KEY_FILE: {exc}") from None
