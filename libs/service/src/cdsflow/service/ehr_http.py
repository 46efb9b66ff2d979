"""The HTTP client a service sends its EHR requests through (the reasoner's lookups, the
writeback's write-backs and hook audits): the EHR auth its settings ask for (`ehr_auth`), its
access tokens counted in `/metrics`, a CLIENT span per request, and at most `lanes` requests
in flight, each on a kept-alive connection of its own lane (`cdsflow.fhir.ConnectionLanes`,
which spares httpcore's walk of one shared pool on every request).

The listener reads the EHR with its own client (`listener/ehr_reads.py`: no redirects,
answers bounded in size).
"""

from __future__ import annotations

import httpx
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

from cdsflow.fhir import ConnectionLanes, count_access_tokens
from cdsflow.service.ehr_auth import ehr_auth
from cdsflow.service.settings import ServiceSettings
from cdsflow.telemetry import Telemetry


def ehr_http(
    settings: ServiceSettings, telemetry: Telemetry, *, lanes: int, timeout_s: float
) -> httpx.AsyncClient:
    """The service's EHR client; the caller closes it (`aclose`) when the service stops."""
    auth = ehr_auth(settings)
    count_access_tokens(auth, telemetry.metrics)
    http = httpx.AsyncClient(
        timeout=timeout_s,
        auth=auth,
        transport=ConnectionLanes.for_url(settings.ehr_base_url, lanes),
    )
    HTTPXClientInstrumentor.instrument_client(http, tracer_provider=telemetry.tracer_provider)
    return http
