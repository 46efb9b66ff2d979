"""The writeback's configuration, read once from `CDSFLOW_*` environment variables.

The shared fields (EHR base URL, Kafka, HTTP, readiness) come from
`cdsflow.service.ServiceSettings`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from cdsflow.contracts import FEEDBACK, HOOK_TOKEN_CLAIMS, RECOMMENDATIONS
from cdsflow.service import HttpPort, ServiceSettings
from cdsflow.writeback.domain.client_tokens import (
    ASYMMETRIC_ALGORITHMS,
    DEFAULT_ALGORITHMS,
    TrustedIssuer,
    is_https_or_loopback_http,
)

# the longest that one message's write-back tries may take (Kafka's max.poll.interval.ms is
# 300 s by default; the rest is margin)
WRITE_RETRIES_BUDGET_S = 250.0
# a consumed batch starts no write-back after this long (what it did not reach is consumed
# again at once), so a batch ends within WRITE_RETRIES_BUDGET_S + this: 280 s < 300 s
BATCH_START_WITHIN_S = 30.0
_ORIGIN = re.compile(r"^https?://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")


def is_origin(value: str) -> bool:
    """A browser origin as it sends it: `scheme://host[:port]`, nothing after."""
    return _ORIGIN.match(value) is not None


class TrustedIssuerSetting(BaseModel):
    """One entry of `CDSFLOW_TRUSTED_ISSUERS`: an EHR allowed to call the hooks."""

    iss: str = Field(min_length=1)
    # its JWK Set, agreed out of band; used when a token has no `jku`
    jwks_url: str | None = None
    # URL prefixes that a token's `jku` may name (same scheme, host and port; path below)
    jku_allowed: list[str] = Field(default_factory=list)
    # FHIR servers (URL prefixes, compared like `jku_allowed`) that this issuer's hook calls
    # may name as `fhirServer` for the writeback to fetch missing prefetch from, with the
    # call's `fhirAuthorization`; empty: never fetch for this issuer
    fhir_servers: list[str] = Field(default_factory=list)
    # the organisations it may speak for (the token's `tenant` claim, CDS Hooks 2.0); empty:
    # `tenant` is not checked; listed: a token without `tenant`, or with another, is a 401
    tenants: list[str] = Field(default_factory=list)

    @field_validator("tenants")
    @classmethod
    def _tenants_named(cls, value: list[str]) -> list[str]:
        if any(not tenant.strip() or tenant != tenant.strip() for tenant in value):
            raise ValueError("a tenant is a non-empty string without surrounding spaces")
        return value

    @model_validator(mode="after")
    def _keys_from_somewhere_safe(self) -> TrustedIssuerSetting:
        if self.jwks_url is None and not self.jku_allowed:
            raise ValueError("a trusted issuer needs a jwks_url or jku_allowed prefixes")
        for url in [
            *([self.jwks_url] if self.jwks_url else []),
            *self.jku_allowed,
            *self.fhir_servers,
        ]:
            if not is_https_or_loopback_http(url):
                raise ValueError(
                    "JWKS and FHIR server URLs must be https (http only on a loopback host)"
                )
        return self

    def trusted(self) -> TrustedIssuer:
        return TrustedIssuer(
            self.iss,
            self.jwks_url,
            tuple(self.jku_allowed),
            tuple(self.fhir_servers),
            frozenset(self.tenants),
        )


class Settings(ServiceSettings):
    """Everything the writeback needs to serve cards and write recommendations back.

    `ehr_base_url` is where write-backs and the readiness probe go.
    """

    http_port: HttpPort = 8083
    # the writeback's consumers (card state, feedback, the write-back group) follow topics
    # where a few tens of ms do not matter to anyone; fetching every 5 ms (the shared
    # default) cost an idle writeback 15 % of a core in empty fetches (README "Inside the
    # budget"). Apache Kafka answers a waiting fetch as soon as a record arrives anyway.
    kafka_fetch_max_wait_ms: int = Field(default=50, ge=0)
    recommendations_topic: str = RECOMMENDATIONS
    # move everything built at start into the collector's permanent generation (gc.freeze),
    # so that full collections under load do not walk it again and again
    gc_freeze_at_start: bool = True
    consumer_group: str = "cdsflow-writeback"
    writeback_enabled: bool = True
    # --- the write into the EHR (README "Write-back": retries, breaker, DLQ) ---
    # tries of one recommendation's transaction in all, then it goes to the .dlq topic; one
    # more than the breaker's threshold, so that the write which opens the breaker is tried
    # again after it (an outage shorter than the breaker's open time loses no write)
    writeback_max_attempts: int = Field(default=6, ge=1, le=20)
    # jittered exponential backoff: before try n+1, uniform(0, min(max, initial * 2**(n-1)))
    writeback_backoff_initial_s: float = Field(default=0.5, gt=0)
    writeback_backoff_max_s: float = Field(default=20.0, gt=0)
    # an EHR's Retry-After (429/503) is waited for, up to this long
    writeback_retry_after_max_s: float = Field(default=30.0, ge=0)
    # the circuit opens after this many consecutive EHR outages ...
    ehr_circuit_failure_threshold: int = Field(default=5, ge=1)
    # ... and stays open this long before one probe write is let through
    ehr_circuit_open_s: float = Field(default=30.0, gt=0)
    # when publishing to the .dlq topic fails: wait this long, then the message (and the rest
    # of its partition) is consumed again
    writeback_retry_pause_s: float = Field(default=5.0, ge=0)
    # recommendations are written back for this many patients at a time, each patient's in
    # offset order (README "Write-back": one EHR round trip at a time capped a replica at
    # 1 / the EHR's latency); also the most write-back transactions in flight to the EHR
    writeback_max_concurrent_patients: int = Field(default=16, ge=1, le=256)
    ehr_timeout_s: float = Field(default=10.0, gt=0)
    # SMART scopes (CDSFLOW_EHR_AUTH=smart-backend): a transaction of conditional creates
    ehr_scopes: str = "system/*.read system/*.write"
    store_max_patients: int = Field(default=100_000, ge=1)
    # a recommendation older than this is neither shown nor read back at start; keep it under
    # the recommendations topic's retention, or a replica started later could not know it
    card_max_age_s: float = Field(default=86_400.0, gt=0)
    # CDS Hooks feedback is published here, and read back by every replica for the snoozes
    feedback_topic: str = FEEDBACK
    # a card overridden with a reason is not shown again for that patient this long, unless
    # its indicator rises (0: no snooze)
    card_snooze_s: float = Field(default=4 * 3600.0, ge=0)
    # The largest CDS Hooks request body accepted (413 above it).
    max_hook_request_bytes: int = Field(default=1024 * 1024, gt=0)
    # Accept `fhirServer: http://127.0.0.1/...` in hook requests; only for the embedded stack
    # on one machine (`cdsflow up`). Otherwise `fhirServer` must be https.
    allow_loopback_http_fhir_server: bool = False

    # --- the CDS services and on-demand scoring (README "Hooks" and "On demand") ---
    # model adapter files or folders of them, separated by commas (one service per hook entry)
    adapters: str = "adapters"
    # Triton's gRPC endpoint for on-demand scoring; unset: never scored on demand (no
    # recommendation stored -> no cards)
    triton_grpc_url: str | None = None
    # the most that scoring on demand may take, prefetch fetched from the EHR included; past
    # it the call is answered {"cards": []}
    on_demand_deadline_ms: int = Field(default=400, ge=1, le=5_000)
    # a searchset fetched (or prefetched) with a `next` link is followed on the same
    # fhirServer, within the deadline, for at most this many pages in all ...
    prefetch_max_pages: int = Field(default=10, ge=1, le=100)
    # ... and until this many entries of one prefetch key are held (what is read is used)
    prefetch_max_entries: int = Field(default=1_000, ge=1, le=100_000)
    # the most bytes of one answer read from a fhirServer (a page, or a read); past it the
    # prefetch is not provided (412), and no more of that answer is read
    prefetch_max_answer_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    # each hook answer with cards is recorded as a BALP-style AuditEvent in the EHR, written
    # in batches: this many seconds after the first one waiting (README "Disclosures to a
    # hook caller"; 0.2 s, not 1 s: smaller, more frequent batches halved the hook p99 at
    # 200 calls/s, README "Inside the budget: measured") ...
    hook_audit_enabled: bool = True
    hook_audit_flush_s: float = Field(default=0.2, gt=0, le=60)
    # ... or as soon as this many are waiting (the most AuditEvents in one transaction)
    hook_audit_batch_max: int = Field(default=500, ge=1, le=5_000)

    # --- who may call the hooks (CDS Hooks JWT); see the README's "Authentication" ---
    # `off` only for a development setup: every hook call is then answered unauthenticated
    hooks_auth: Literal["on", "off"] = "on"
    # JSON: [{"iss": ..., "jwks_url": ..., "jku_allowed": [...]}]; no default
    trusted_issuers: list[TrustedIssuerSetting] = Field(default_factory=list)
    # this service's URL(s) as the EHR calls it, e.g. https://cds.example.org; a token's
    # `aud` must be one of them + `/cds-services/{id}`. Several: separated by spaces or commas.
    cds_public_base_url: str | None = None
    hook_token_algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    hook_token_skew_s: float = Field(default=30.0, ge=0, le=300)
    # the longest `exp` - `iat` accepted; also how long a `jti` is remembered
    hook_token_max_lifetime_s: float = Field(default=600.0, gt=0, le=3600)
    jwks_cache_ttl_s: float = Field(default=300.0, gt=0)
    # an unknown `kid` re-fetches an issuer's JWKS at most this often
    jwks_refetch_interval_s: float = Field(default=10.0, ge=0)
    jwks_timeout_s: float = Field(default=5.0, gt=0)
    seen_tokens_max: int = Field(default=100_000, ge=1)
    # --- a replayed token refused on every replica (README "Replays across replicas") ---
    # each accepted token is claimed here (key: a keyed hash of iss and jti); every replica
    # reads the topic back from now - (max lifetime + 2 x skew)
    hook_token_claims_topic: str = Field(default=HOOK_TOKEN_CLAIMS, min_length=1)
    # partitions and replicas of the claims topic, when the writeback creates it
    hook_token_claims_partitions: int = Field(default=6, ge=1, le=1_000)
    hook_token_claims_replication: int = Field(default=1, ge=1, le=10)
    # the longest a hook call waits for its token's claim to be confirmed; past it: 503
    hook_token_claim_deadline_ms: int = Field(default=500, ge=10, le=5_000)
    # the claims are read on demand: a partition is fetched only while a claim on it waits,
    # and that claim is on the broker already, so the fetch returns at once; this wait bounds
    # only a fetch that finds nothing (the read-back at start reaching the end). Not 0: the
    # embedded Tansu answers a fetch with no wait with no records
    hook_token_claims_fetch_max_wait_ms: int = Field(default=100, ge=1, le=500)
    # claims held in memory (every replica's, until they expire); past it, the one that
    # expires soonest is forgotten first
    hook_token_claims_max: int = Field(default=250_000, ge=1)

    # --- CORS on the CDS Hooks routes, for EHR apps that call from a browser ---
    # origins allowed (`https://ehr.example.org`), separated by spaces or commas; `*` for any
    # (only without credentials); empty (the default): no CORS headers, browsers refuse
    cors_allowed_origins: str = ""
    # let a browser send cookies or TLS client certificates along (never with `*`)
    cors_allow_credentials: bool = False

    @field_validator("hook_token_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused or not value:
            raise ValueError(
                "hook token algorithms must be asymmetric (never none or HMAC): "
                + ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            )
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _origins_only(cls, value: str) -> str:
        for origin in value.replace(",", " ").split():
            if origin != "*" and not is_origin(origin):
                raise ValueError(
                    "CORS origins are `scheme://host[:port]` (no path, no trailing slash) or `*`"
                )
        return value

    @model_validator(mode="after")
    def _no_credentials_with_any_origin(self) -> Settings:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "CDSFLOW_CORS_ALLOWED_ORIGINS='*' is allowed only without credentials: name the "
                "origins, or set CDSFLOW_CORS_ALLOW_CREDENTIALS=false"
            )
        return self

    @model_validator(mode="after")
    def _write_retries_fit_the_poll_interval(self) -> Settings:
        # one message's tries hold its partition; all of them must end well within Kafka's
        # max.poll.interval.ms (300 s by default), or the consumer is thrown out of its group
        longest_wait = max(
            self.writeback_backoff_max_s, self.writeback_retry_after_max_s, self.ehr_circuit_open_s
        )
        worst_s = self.writeback_max_attempts * (self.ehr_timeout_s + longest_wait)
        if worst_s > WRITE_RETRIES_BUDGET_S:
            raise ValueError(
                "write-back retries could hold a message for "
                f"{worst_s:.0f} s (attempts x (EHR timeout + longest wait)); keep it under "
                f"{WRITE_RETRIES_BUDGET_S:.0f} s: fewer attempts or shorter waits"
            )
        return self

    @model_validator(mode="after")
    def _authenticated_unless_off(self) -> Settings:
        if self.hooks_auth == "off":
            return self
        if not self.trusted_issuers:
            raise ValueError(
                "CDS Hooks calls are authenticated, but no EHR is trusted: set "
                "CDSFLOW_TRUSTED_ISSUERS (and CDSFLOW_CDS_PUBLIC_BASE_URL), or "
                "CDSFLOW_HOOKS_AUTH=off for a development setup"
            )
        if any(not url.startswith(("http://", "https://")) for url in self.public_base_urls):
            raise ValueError("CDSFLOW_CDS_PUBLIC_BASE_URL must be http(s) URL(s)")
        if not self.public_base_urls:
            raise ValueError(
                "CDS Hooks calls are authenticated: set CDSFLOW_CDS_PUBLIC_BASE_URL, this "
                "service's URL as the EHR calls it (a token's aud is checked against it)"
            )
        return self

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(self.cors_allowed_origins.replace(",", " ").split())

    @property
    def hook_token_claims_window_s(self) -> float:
        """How far back each replica reads the claims: a claim of any token still alive."""
        return self.hook_token_max_lifetime_s + 2 * self.hook_token_skew_s

    @property
    def public_base_urls(self) -> tuple[str, ...]:
        text = (self.cds_public_base_url or "").replace(",", " ")
        return tuple(url.rstrip("/") for url in text.split())
