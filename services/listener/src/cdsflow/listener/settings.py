"""The listener's configuration, read once from `CDSFLOW_*` environment variables.

The shared fields (EHR base URL, Kafka, HTTP, readiness) come from
`cdsflow.service.ServiceSettings`; the pseudonym key and log level are read by
`cdsflow.telemetry.TelemetrySettings`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from cdsflow.contracts import CLINICAL_EVENTS
from cdsflow.listener.domain.channels import Channel
from cdsflow.service import HttpPort, ServiceSettings

ONE_MEBIBYTE = 1024 * 1024
_MIN_SECRET_CHARS = 16


class Settings(ServiceSettings):
    """Everything the listener needs to accept notifications and publish clinical events.

    `ehr_base_url` is part of every event id and of `ClinicalEvent.source`.
    """

    # The shared secret the EHR sends as `Authorization: Bearer <secret>` (the Subscription's
    # `channel.header`). No default: a deployment must choose one.
    channel_secret: SecretStr

    clinical_events_topic: str = CLINICAL_EVENTS

    http_port: HttpPort = 8081
    # SMART scopes (CDSFLOW_EHR_AUTH=smart-backend): it reads and searches what notifications
    # leave out, and keeps its own Subscriptions
    ehr_scopes: str = "system/*.read system/Subscription.write"

    max_notification_bytes: int = Field(default=ONE_MEBIBYTE, gt=0)
    # How long a notification may wait for the broker's ack before the EHR is told to retry.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # `Retry-After` on a 503 answer.
    retry_after_s: int = Field(default=5, ge=0)
    # The time for one read of an id-only notification's focus from the EHR (its answer is
    # bounded by `max_notification_bytes`, like a notification: it becomes one Kafka record).
    ehr_read_timeout_s: float = Field(default=5.0, gt=0)
    # The dedupe memory: a redelivered event already on the topic within this window is not
    # published again (24 h covers the longest EHR retry schedule we know, Azure's), holding
    # at most `dedupe_max_events` ids (about 220 bytes each).
    dedupe_window_s: float = Field(default=24 * 3600.0, gt=0)
    dedupe_max_events: int = Field(default=500_000, gt=0)
    # How long each fetch of the dedupe memory's follower of the clinical-events topic waits
    # for data. Not on a notification's path (this replica's own acks go into the memory at
    # once; the follower learns what other replicas published), so it need not be short: on a
    # broker that holds a fetch for its whole wait (the embedded Tansu) 5 ms meant 200 fetches
    # a second, answered, parsed and traced, even when idle. A redelivery to another replica
    # is caught once read back: on such a broker up to about this much later. Not 0: a fetch
    # that never waits is a loop that never rests (Tansu answers it empty at once).
    published_events_fetch_max_wait_ms: int = Field(default=50, ge=1, le=1_000)
    # The Subscriptions the listener keeps on the EHR (JSON list of channels; see the README),
    # the public URL the EHR notifies (this service's `/fhir/notifications/rest-hook`, as the
    # EHR reaches it), and how often each Subscription's status is checked.
    channels: list[Channel] = Field(default_factory=list)
    notification_endpoint: str | None = None
    subscription_check_interval_s: float = Field(default=30.0, gt=0)
    # How long an event number may be missing (EHRs deliver concurrently, out of order)
    # before it is a gap, and how long past its heartbeat period a heartbeat channel may be
    # silent; either is recovered ($status, $events, else the recovery search).
    gap_grace_s: float = Field(default=10.0, gt=0)
    # A ping's search for what changed: after a start, how far back the first one looks.
    ping_lookback_s: float = Field(default=3600.0, gt=0)
    # How long `/readyz` waits for the broker.
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

    @model_validator(mode="after")
    def _channels_need_an_endpoint(self) -> Settings:
        if self.channels and not (self.notification_endpoint or "").startswith(
            ("http://", "https://")
        ):
            raise ValueError(
                "channels need CDSFLOW_NOTIFICATION_ENDPOINT: the http(s) URL the EHR notifies"
            )
        names = [channel.name for channel in self.channels]
        if len(set(names)) != len(names):
            raise ValueError("each channel needs its own name")
        return self
