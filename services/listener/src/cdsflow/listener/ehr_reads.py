"""The HTTP client the listener reads the EHR with (id-only notifications' focus).

Only `CDSFLOW_EHR_BASE_URL` is read (the URL is built from the focus's type and id by
`cdsflow.fhir.EhrClient`); redirects are not followed; each read is bounded in time and in the
bytes of the answer (`cdsflow.service.BoundedAnswers`, `AnswerTooLarge` past
`CDSFLOW_MAX_NOTIFICATION_BYTES`), so a misbehaving EHR cannot hold a notification or the
listener's memory. Given a tracer, each read is a CLIENT span (`cdsflow.service.ClientSpans`,
as the other services' EHR client makes it).
"""

from __future__ import annotations

import httpx
from opentelemetry import trace

from cdsflow.service import BoundedAnswers, ClientSpans, EnvironmentProxies


def ehr_http_client(
    timeout_s: float,
    max_answer_bytes: int,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    auth: httpx.Auth | None = None,
    tracer: trace.Tracer | None = None,
) -> httpx.AsyncClient:
    """An httpx client for the EHR: no redirects, `timeout_s` per read, answers bounded,
    through the environment's proxy for the EHR when one is set (`EnvironmentProxies`),
    authenticated by `auth` (`cdsflow.service.ehr_auth`; its token requests bounded alike),
    each request a CLIENT span of `tracer` when one is given."""
    bounded = BoundedAnswers(transport or EnvironmentProxies(), max_answer_bytes)
    return httpx.AsyncClient(
        transport=ClientSpans(bounded, tracer) if tracer else bounded,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout_s),
        auth=auth,
    )
