"""The CDS Hooks endpoints through the ASGI app in-process: answers, errors, span and metrics.

The store is filled directly here; filling it from Kafka is in
tests/integration/test_writeback.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from cdsflow.contracts import Mode, SuggestionAction
from cdsflow.fhir import EhrClient
from cdsflow.service import add_error_answers
from cdsflow.telemetry import AllowlistSpanExporter, MetricsRegistry, PatientKeyer
from cdsflow.writeback.domain.discovery import DETERIORATION_SERVICE
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored
from cdsflow.writeback.handlers import HookLimits, WritebackMetrics
from cdsflow.writeback.hook_audits import HookAuditTrail
from cdsflow.writeback.hooks_api import cds_hooks_router

from .sample_recommendations import PSEUDONYM_KEY, recommendation

SERVICE_URL = "/cds-services/cdsflow-deterioration"
HOOK_LIMIT_BYTES = 64 * 1024
PRODUCING_SPAN = SpanContext(
    trace_id=0xABCDEF0123456789ABCDEF0123456789,
    span_id=0x0123456789ABCDEF,
    is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


@dataclass
class HookApi:
    http: httpx.AsyncClient
    store: LatestRecommendations
    metrics: MetricsRegistry
    spans: InMemorySpanExporter

    def server_spans(self) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.kind is SpanKind.SERVER]

    def disclosures(self, disclosed: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cdsflow_writeback_hook_disclosures_total", {"disclosed": disclosed}
        )
        return value or 0.0

    def refusals(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cdsflow_writeback_hook_refusals_total", {"reason": reason}
        )
        return value or 0.0


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    spans.clear()


@pytest.fixture
async def api(exporter: InMemorySpanExporter) -> AsyncIterator[HookApi]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(AllowlistSpanExporter(exporter)))
    registry = MetricsRegistry("writeback")
    store = LatestRecommendations(rebuilt=True)
    app = FastAPI(redirect_slashes=False)
    transport = httpx.ASGITransport(app=app)
    http = httpx.AsyncClient(transport=transport, base_url="http://writeback")
    # queues only (never started here); writing them into an EHR: test_writeback_hooks.py
    audits = HookAuditTrail(EhrClient("https://ehr.example.org/fhir", http), registry)
    app.include_router(
        cds_hooks_router(
            services=(DETERIORATION_SERVICE,),
            store=store,
            patient_keyer=PatientKeyer(PSEUDONYM_KEY),
            metrics=WritebackMetrics.on(registry),
            limits=HookLimits(max_body_bytes=HOOK_LIMIT_BYTES),
            client_auth=None,  # authenticated calls: test_writeback_client_auth.py
            audits=lambda: audits,
        )
    )
    add_error_answers(app, media_type="application/json")
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
    async with http:
        yield HookApi(http, store, registry, exporter)
    provider.shutdown()


def patient_view(patient_id: str) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example.org/fhir",
        "context": {"userId": "Practitioner/p-1", "patientId": patient_id},
    }


async def test_discovery_lists_the_deterioration_service(api: HookApi) -> None:
    response = await api.http.get("/cds-services")

    assert response.status_code == 200
    assert response.json() == {
        "services": [
            {
                "hook": "patient-view",
                "id": "cdsflow-deterioration",
                "title": DETERIORATION_SERVICE.title,
                "description": DETERIORATION_SERVICE.description,
            }
        ]
    }


async def test_a_stored_active_recommendation_is_served_as_a_card(api: HookApi) -> None:
    api.store.keep(stored(recommendation(patient_id="pat-17", band="high"), PRODUCING_SPAN))

    response = await api.http.post(SERVICE_URL, json=patient_view("pat-17"))

    assert response.status_code == 200
    (card,) = response.json()["cards"]
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("High risk of clinical deterioration")


FLAG_ACTION = SuggestionAction(
    type="create",
    description="Flag the chart: deterioration risk 83% within 24 h",
    resource_json=json.dumps(
        {"resourceType": "Flag", "status": "active", "subject": {"reference": "Patient/pat-17"}}
    ).encode(),
)


async def test_an_active_recommendations_system_actions_are_answered(api: HookApi) -> None:
    source = recommendation(patient_id="pat-17", band="high")
    source.system_actions.append(FLAG_ACTION)
    api.store.keep(stored(source, PRODUCING_SPAN))

    response = await api.http.post(SERVICE_URL, json=patient_view("pat-17"))

    assert response.status_code == 200
    answer = response.json()
    assert len(answer["cards"]) == 1
    assert answer["systemActions"] == [
        {
            "type": "create",
            "description": "Flag the chart: deterioration risk 83% within 24 h",
            "resource": {
                "resourceType": "Flag",
                "status": "active",
                "subject": {"reference": "Patient/pat-17"},
            },
        }
    ]
    served = api.metrics.registry.get_sample_value("cdsflow_writeback_system_actions_served_total")
    assert served == 1
    assert api.disclosures("cards-and-system-actions") == 1


async def test_an_answer_with_system_actions_and_no_cards_is_recorded_as_a_disclosure(
    api: HookApi,
) -> None:
    low = recommendation(patient_id="pat-20", value=0.04, band="low", recommendation_id="rec-20")
    low.system_actions.append(FLAG_ACTION)
    api.store.keep(stored(low))
    nothing = recommendation(patient_id="pat-21", value=0.04, band="low", recommendation_id="r21")
    api.store.keep(stored(nothing))

    given = (await api.http.post(SERVICE_URL, json=patient_view("pat-20"))).json()
    silent = (await api.http.post(SERVICE_URL, json=patient_view("pat-21"))).json()

    assert given["cards"] == []
    assert [action["type"] for action in given["systemActions"]] == ["create"]
    assert silent == {"cards": []}  # discloses nothing: not recorded
    assert api.disclosures("system-actions") == 1
    assert api.disclosures("cards") == api.disclosures("cards-and-system-actions") == 0


async def test_a_shadow_recommendations_system_actions_are_never_answered(api: HookApi) -> None:
    shadow = recommendation(patient_id="pat-18", band="high", mode=Mode.MODE_SHADOW)
    shadow.system_actions.append(FLAG_ACTION)
    api.store.keep(stored(shadow))
    without = recommendation(patient_id="pat-19", band="high", recommendation_id="rec-19")
    api.store.keep(stored(without))

    in_shadow = await api.http.post(SERVICE_URL, json=patient_view("pat-18"))
    none_declared = await api.http.post(SERVICE_URL, json=patient_view("pat-19"))

    assert in_shadow.json() == {"cards": []}
    assert "systemActions" not in none_declared.json()  # left out rather than sent empty
    assert len(none_declared.json()["cards"]) == 1


async def test_a_plain_http_fhir_server_is_refused(api: HookApi) -> None:
    request = {**patient_view("pat-17"), "fhirServer": "http://ehr.example.org/fhir"}

    response = await api.http.post(SERVICE_URL, json=request)

    assert response.status_code == 400
    assert "'fhirServer' must be an https URL" in response.json()["issue"][0]["diagnostics"]


async def test_the_hook_span_links_to_the_producing_trace_without_patient_data(
    api: HookApi,
) -> None:
    source = recommendation(patient_id="pat-17", recommendation_id="rec-77")
    api.store.keep(stored(source, PRODUCING_SPAN))

    await api.http.post(SERVICE_URL, json=patient_view("pat-17"))

    (span,) = api.server_spans()
    assert span.attributes is not None
    assert span.attributes["cdsflow.cds_service"] == "cdsflow-deterioration"
    assert span.attributes["cdsflow.hook"] == "patient-view"
    assert span.attributes["cdsflow.card_count"] == 1
    assert span.attributes["cdsflow.patient_key"] == source.patient_key
    assert span.attributes["cdsflow.recommendation_id"] == "rec-77"
    assert [link.context for link in span.links] == [PRODUCING_SPAN]
    assert "pat-17" not in f"{span.name} {dict(span.attributes)}"


async def test_a_patient_without_recommendation_gets_no_card_and_no_link(api: HookApi) -> None:
    response = await api.http.post(SERVICE_URL, json=patient_view("nobody"))

    assert response.json() == {"cards": []}
    (span,) = api.server_spans()
    assert span.attributes is not None
    assert span.attributes["cdsflow.card_count"] == 0
    assert list(span.links) == []


async def test_before_the_topic_is_read_back_a_call_gets_no_card_never_a_5xx(
    api: HookApi,
) -> None:
    api.store.keep(stored(recommendation(patient_id="pat-17", band="high")))
    api.store.rebuilt = False  # a half-read store may hold a superseded recommendation

    response = await api.http.post(SERVICE_URL, json=patient_view("pat-17"))

    assert response.status_code == 200
    assert response.json() == {"cards": []}
    unready = api.metrics.registry.get_sample_value(
        "cdsflow_writeback_hook_answers_before_rebuild_total"
    )
    assert unready == 1
    (span,) = api.server_spans()
    assert span.attributes is not None
    assert span.attributes["cdsflow.reason"] == "state-not-rebuilt"

    api.store.rebuilt = True
    (card,) = (await api.http.post(SERVICE_URL, json=patient_view("pat-17"))).json()["cards"]
    assert card["indicator"] == "critical"


async def test_served_cards_and_hook_latency_are_counted(api: HookApi) -> None:
    api.store.keep(stored(recommendation(patient_id="pat-17", band="moderate")))

    await api.http.post(SERVICE_URL, json=patient_view("pat-17"))
    await api.http.post(SERVICE_URL, json=patient_view("pat-17"))

    registry = api.metrics.registry
    served = registry.get_sample_value(
        "cdsflow_writeback_cards_served_total", {"indicator": "warning"}
    )
    calls = registry.get_sample_value(
        "cdsflow_writeback_hook_duration_seconds_count", {"hook": "patient-view"}
    )
    assert served == 2
    assert calls == 2


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"hook": "patient-view", "context": {"patientId": "pat-17"}}).encode(),
        json.dumps({**patient_view("pat-17"), "hook": "order-sign"}).encode(),
        json.dumps({**patient_view("pat-17"), "context": {"patientId": "a/b"}}).encode(),
    ],
)
async def test_a_bad_request_is_a_400_operation_outcome(api: HookApi, body: bytes) -> None:
    response = await api.http.post(
        SERVICE_URL, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "error"
    assert outcome["issue"][0]["code"] == "invalid"
    assert "Traceback" not in response.text
    assert "pat-17" not in response.text


async def test_an_unknown_service_is_a_404(api: HookApi) -> None:
    response = await api.http.post("/cds-services/no-such-service", json=patient_view("pat-17"))

    assert response.status_code == 404
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_a_body_over_the_limit_is_a_413_and_is_not_read(api: HookApi) -> None:
    body = json.dumps({**patient_view("pat-17"), "padding": "x" * HOOK_LIMIT_BYTES}).encode()

    response = await api.http.post(
        SERVICE_URL, content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert api.refusals("too-large") == 1


@pytest.mark.parametrize(
    "content_type", ["text/plain", ";;;", "application/json; charset=utf-16", "application/xml"]
)
async def test_the_content_type_is_checked(api: HookApi, content_type: str) -> None:
    response = await api.http.post(
        SERVICE_URL,
        content=json.dumps(patient_view("pat-17")).encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_duplicate_authorization_header_is_refused(api: HookApi) -> None:
    response = await api.http.post(
        SERVICE_URL,
        content=json.dumps(patient_view("pat-17")).encode(),
        headers=[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer a"),
            ("Authorization", "Bearer b"),
        ],
    )
    assert response.status_code == 400
    assert api.refusals("duplicate-header") == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 5000 + b"]" * 5000, "too-deep"),
        (b'{"hook": ' + b"1" * 5000 + b"}", "number-out-of-range"),
        (b'{"hook": NaN}', "not-json"),
    ],
)
async def test_json_that_would_crash_a_parser_is_a_400(
    api: HookApi, body: bytes, reason: str
) -> None:
    response = await api.http.post(
        SERVICE_URL, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert api.refusals(reason) == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/cds-services/", 404),
        ("GET", "/cds-services/", 404),
        ("POST", SERVICE_URL + "/", 404),
        ("GET", SERVICE_URL, 405),
        ("DELETE", "/cds-services", 405),
    ],
)
async def test_every_error_is_an_operation_outcome_and_nothing_redirects(
    api: HookApi, method: str, path: str, status: int
) -> None:
    response = await api.http.request(method, path, json=patient_view("pat-17"))

    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "detail" not in response.json()
