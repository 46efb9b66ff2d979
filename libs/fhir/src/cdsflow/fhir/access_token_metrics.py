"""How SMART Backend Services tokens are obtained, as each service's metric
`cdsflow_ehr_access_tokens_total{outcome}`: `fetched` (a new token from the EHR's token
endpoint), `failed` (the token endpoint refused, answered something unreadable, or could not
be reached) and `cached` (a request to the EHR that reused the cached token). A healthy
service shows `cached` growing and `fetched` growing about once per token lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from cdsflow.fhir.smart_backend_auth import SmartBackendAuth

if TYPE_CHECKING:  # not imported at run time: `import cdsflow.fhir` stays light
    from prometheus_client import Counter

    from cdsflow.telemetry import MetricsRegistry

FETCHED = "fetched"
FAILED = "failed"
CACHED = "cached"


@dataclass(frozen=True)
class AccessTokenMetrics:
    tokens: Counter

    @classmethod
    def register(cls, registry: MetricsRegistry) -> AccessTokenMetrics:
        metrics = cls(
            tokens=registry.counter(
                "ehr_access_tokens",
                "SMART Backend Services access tokens, by outcome: fetched from the EHR's "
                "token endpoint, failed to fetch, cached (reused for a request)",
                ("outcome",),
            )
        )
        for outcome in (FETCHED, FAILED, CACHED):
            metrics.tokens.labels(outcome)  # shown at 0 from the start
        return metrics


def count_access_tokens(auth: httpx.Auth | None, registry: MetricsRegistry) -> None:
    """Count the tokens of the service's EHR auth on its `/metrics`, when it is SMART
    Backend Services (a static bearer or no auth has no tokens to count). Call once, in the
    lifespan, beside `ehr_auth(settings)`."""
    if isinstance(auth, SmartBackendAuth):
        metrics = AccessTokenMetrics.register(registry)
        auth.on_token = metrics.tokens.labels
