"""/healthz, /metrics and the server spans, in-process over ASGI (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from cdsflow.service import add_operational_routes, instrument_app, readiness_response
from cdsflow.telemetry import Telemetry, TelemetrySettings, setup_telemetry


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(pseudonym_key: str, spans: InMemorySpanExporter) -> Iterator[Telemetry]:
    telemetry = setup_telemetry(
        "unit-service",
        TelemetrySettings(pseudonym_key=SecretStr(pseudonym_key)),
        extra_span_exporter=spans,
    )
    yield telemetry
    telemetry.shutdown()


@pytest.fixture
def app(telemetry: Telemetry) -> FastAPI:
    app = FastAPI()
    add_operational_routes(app, telemetry)

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"broker": True}

    @app.get("/cds-services")
    async def discovery() -> dict[str, list[str]]:
        return {"services": []}

    instrument_app(app, telemetry)
    return app


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc.test")


async def test_healthz_answers_ok_as_plain_text(app: FastAPI) -> None:
    async with client_of(app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"].startswith("text/plain")


async def test_metrics_are_prometheus_text(app: FastAPI, telemetry: Telemetry) -> None:
    checks = telemetry.metrics.counter("unit_service_checks", "checks", ("outcome",))
    checks.labels(outcome="ok").inc()
    async with client_of(app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'cdsflow_unit_service_checks_total{outcome="ok"} 1.0' in response.text


async def test_operational_routes_stay_out_of_the_schema(app: FastAPI) -> None:
    async with client_of(app) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/healthz" not in paths
    assert "/metrics" not in paths


async def test_probes_and_scrapes_are_not_traced_other_routes_are(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    async with client_of(app) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200
        assert spans.get_finished_spans() == ()
        assert (await client.get("/cds-services")).status_code == 200

    (span,) = spans.get_finished_spans()  # one server span: no receive/send spans
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /cds-services"


@pytest.mark.parametrize(
    ("checks", "status"),
    [
        ({"broker": True, "model": True}, 200),
        ({"broker": True, "model": False}, 503),
        ({"broker": False}, 503),
    ],
)
def test_readiness_answer_names_each_check(checks: dict[str, bool], status: int) -> None:
    response = readiness_response(checks)
    assert response.status_code == status
    assert json.loads(bytes(response.body)) == checks


async def test_paths_whose_spans_the_service_makes_get_its_cheap_span_others_the_instrumentations(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    app = FastAPI()

    @app.get("/fhir/notifications/rest-hook")
    async def notified() -> dict[str, str]:
        return {}

    @app.get("/subscriptions")
    async def subscriptions() -> list[str]:
        return []

    @app.get("/other/fhir/notifications/rest-hook")
    async def elsewhere() -> dict[str, str]:
        return {}

    instrument_app(app, telemetry, spans_made_by_the_service=("/fhir/notifications/rest-hook",))
    async with client_of(app) as client:
        assert (await client.get("/fhir/notifications/rest-hook")).status_code == 200
        (own,) = spans.get_finished_spans()
        spans.clear()
        assert (await client.get("/subscriptions")).status_code == 200
        (instrumented,) = spans.get_finished_spans()
        spans.clear()
        # the prefix elsewhere in a path: neither skipped by the instrumentation nor made here
        assert (await client.get("/other/fhir/notifications/rest-hook")).status_code == 200
        (other,) = spans.get_finished_spans()
    assert own.name == "GET /fhir/notifications/rest-hook"
    # the cheap span holds the stable HTTP attributes
    assert set((own.attributes or {}).keys()) == {
        "http.request.method",
        "url.scheme",
        "network.protocol.version",
        "http.route",
        "http.response.status_code",
    }
    assert instrumented.name == "GET /subscriptions"
    assert other.name == "GET /other/fhir/notifications/rest-hook"
    for span in (instrumented, other):  # the instrumentation's attribute names
        assert (span.attributes or {})["http.method"] == "GET"
        assert "http.request.method" not in (span.attributes or {})
