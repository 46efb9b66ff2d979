"""`cdsflow.service.ehr_http`, the EHR client of the reasoner and the writeback, against an EHR
stand-in on loopback HTTP: the settings' auth on every request, one CLIENT span per request,
and no more requests in flight than its connections, each kept alive."""

from __future__ import annotations

from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from cdsflow.fhir import EhrClient
from cdsflow.service import ServiceSettings, ehr_http
from tests.support.held_ehr import answered_while_held, held_ehr
from tests.support.telemetry import recording_telemetry


async def test_the_ehr_client_sends_its_auth_and_spans_over_its_connections(
    pseudonym_key: str,
) -> None:
    async with held_ehr() as (ehr, base_url):
        settings = ServiceSettings(
            ehr_base_url=f"{base_url}/fhir",
            http_port=8080,
            ehr_auth="bearer",
            ehr_bearer_token=SecretStr("ehr-token-not-secret"),
        )
        with recording_telemetry("ehr-http", pseudonym_key) as (telemetry, spans):
            async with ehr_http(settings, telemetry, connections=2, timeout_s=30) as http:
                client = EhrClient(settings.ehr_base_url, http)
                searches = [client.search("Observation", [("n", str(n))]) for n in range(6)]
                # the other four wait for a connection, not at the EHR
                await answered_while_held(ehr, searches, at_once=2)
            telemetry.tracer_provider.force_flush()
            clients = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]

    assert ehr.most_in_flight == 2
    assert len(ehr.client_ports) == 2  # six searches over two kept-alive connections
    assert ehr.authorizations == ["Bearer ehr-token-not-secret"] * 6
    assert len(clients) == 6
