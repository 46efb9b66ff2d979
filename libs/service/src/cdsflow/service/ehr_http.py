"""The HTTP client a service sends its EHR requests through (the reasoner's lookups, the
writeback's write-backs and hook audits): the EHR auth its settings ask for (`ehr_auth`), its
access tokens counted in `/metrics`, a CLIENT span per request (`client_spans.ClientSpans`),
and at most `connections` requests in flight, each on a kept-alive connection
(`cdsflow.fhir.ehr_connections`, aiohttp's connection pool under httpx's interface).

The listener reads the EHR with its own client (`listener/ehr_reads.py`: no redirects,
answers bounded in size).
"""

from __future__ import annotations

import httpx

from cdsflow.fhir import count_access_tokens, ehr_connections
from cdsflow.service.client_spans import ClientSpans
from cdsflow.service.ehr_auth import ehr_auth
from cdsflow.service.settings import ServiceSettings
from cdsflow.telemetry import Telemetry


def ehr_http(
    settings: ServiceSettings, telemetry: Telemetry, *, connections: int, timeout_s: float
) -> httpx.AsyncClient:
    """The service's EHR client; the caller closes it (`aclose`) when the service stops."""
    auth = ehr_auth(settings)
    count_access_tokens(auth, telemetry.metrics)
    return httpx.AsyncClient(
        timeout=timeout_s,
        auth=auth,
        transport=ClientSpans(
            ehr_connections(settings.ehr_base_url, connections),
            telemetry.tracer_provider.get_tracer("cdsflow.service.ehr_http"),
        ),
    )
