"""`GET /cds-services` and `POST /cds-services/{id}` (CDS Hooks 2.0): the cards of one model
adapter for one patient, inside the hook's budget.

- The common case is a lookup: the latest active recommendation of the patient from the
  service's adapter, as every replica keeps it (`latest_recommendations.py`).
- With none stored, and always for `order-select`/`order-sign` (draft orders are not in the
  EHR yet, so no stored recommendation has seen them), the call is scored on demand
  (`on_demand.py`) within the deadline; past it, or with Triton down, `{"cards": []}`.
- A service whose adapter has no active version answers `{"cards": []}` (shadow results are
  never shown).
- An active recommendation whose adapter declares system actions for its result carries them
  as `systemActions` (create or update, for the EHR to apply if it agrees to); a shadow one
  never does.
- An answer with cards or system actions is a disclosure: its AuditEvent is queued for the
  EHR (`hook_audits.py`), off the answer's path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace

from cdsflow.models.recommendation_messages import system_actions_json
from cdsflow.service import (
    RequestRefused,
    read_bounded_body,
    require_json_media_type,
    single_header,
)
from cdsflow.telemetry import PatientKeyer
from cdsflow.writeback.client_auth import ClientAuthenticator
from cdsflow.writeback.domain.card_snoozes import CardSnoozes, snooze_key
from cdsflow.writeback.domain.cards import cards_for
from cdsflow.writeback.domain.client_tokens import TokenRejected, TrustedIssuer
from cdsflow.writeback.domain.discovery import CdsService, discovery_document
from cdsflow.writeback.domain.hook_disclosure_audit import HookDisclosure
from cdsflow.writeback.domain.hook_requests import (
    ORDER_HOOKS,
    HookRequest,
    InvalidHookRequest,
    parse_hook_request,
)
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations, stored
from cdsflow.writeback.domain.token_claims import ClaimUnconfirmed
from cdsflow.writeback.handlers import (
    HookLimits,
    WritebackMetrics,
    problem_response,
    replay_check_unavailable_response,
    unauthenticated_response,
)
from cdsflow.writeback.hook_audits import HookAuditTrail
from cdsflow.writeback.on_demand import OnDemandScoring, PrefetchUnavailable

# stored recommendations whose rendered cards are kept (past it, the cache starts again)
RENDERED_CARDS_KEPT = 10_000
# a hook's answer: its cards, and its CDS Hooks systemActions (active recommendations only)
Answer = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def cds_hooks_router(
    *,
    services: tuple[CdsService, ...],
    store: LatestRecommendations,
    patient_keyer: PatientKeyer,
    metrics: WritebackMetrics,
    limits: HookLimits,
    client_auth: Callable[[], ClientAuthenticator] | None,
    snoozes: CardSnoozes | None = None,
    on_demand: Callable[[], OnDemandScoring | None] = lambda: None,
    audits: Callable[[], HookAuditTrail | None] = lambda: None,
) -> APIRouter:
    """Discovery (unauthenticated, as the spec allows) and the service calls (the caller's
    JWT checked by `client_auth()`; None: no authentication, development only). Until the
    store is rebuilt from the topic, a call that a stored recommendation would answer is
    answered `{"cards": []}`: a half-read store could hold a superseded recommendation."""
    router = APIRouter()
    by_id = {service.id: service for service in services}
    # the cards and system actions of stored recommendations, rendered once: (recommendation
    # id, trace id) -> them (never changed after; the snooze filter makes a new list)
    rendered: dict[tuple[str, str | None], Answer] = {}

    @router.get("/cds-services")
    async def discovery() -> JSONResponse:
        return JSONResponse(discovery_document(services))

    @router.post("/cds-services/{service_id}")
    async def call_service(service_id: str, request: Request) -> JSONResponse:
        started = time.perf_counter()
        service = by_id.get(service_id)
        if service is None:
            metrics.hook_refusals.labels(reason="unknown-service").inc()
            return problem_response(404, "not-found", "there is no CDS service with this id")
        span = trace.get_current_span()
        span.set_attributes({"cdsflow.cds_service": service.id, "cdsflow.hook": service.hook})
        issuer: TrustedIssuer | None = None
        try:
            authorization = single_header(request, "authorization")  # two are refused
            if client_auth is not None:
                authenticator = client_auth()
                iss = await authenticator.authenticate(authorization, f"/cds-services/{service.id}")
                issuer = authenticator.trusted_issuer(iss)
            require_json_media_type(request, ("application/json",))
            raw = await read_bounded_body(request, limits.max_body_bytes)
            hook_request = parse_hook_request(
                raw,
                hook=service.hook,
                allow_loopback_http=limits.allow_loopback_http_fhir_server,
            )
        except TokenRejected as rejected:
            metrics.token_rejections.labels(reason=rejected.reason).inc()
            return unauthenticated_response()
        except ClaimUnconfirmed:
            return replay_check_unavailable_response()
        except RequestRefused as refused:
            metrics.hook_refusals.labels(reason=refused.reason).inc()
            return problem_response(refused.status_code, refused.issue_code, refused.description)
        except InvalidHookRequest as exc:
            metrics.hook_refusals.labels(reason=exc.reason).inc()
            return problem_response(400, "invalid", str(exc))
        patient_key = patient_keyer.patient_key(hook_request.patient_reference)
        span.set_attribute("cdsflow.patient_key", patient_key)
        try:
            cards, system_actions = await _answer(service, hook_request, patient_key, issuer)
        except PrefetchUnavailable as unavailable:
            metrics.hook_refusals.labels(reason="prefetch-unavailable").inc()
            span.set_attribute("cdsflow.reason", "prefetch-unavailable")
            return problem_response(412, "processing", str(unavailable))
        if snoozes is not None:
            now = datetime.now(UTC)
            key = snooze_key(patient_key, service.adapter_id)
            cards = [card for card in cards if not snoozes.hides(key, card["indicator"], now)]
        span.set_attribute("cdsflow.card_count", len(cards))
        trail = audits()
        if (cards or system_actions) and trail is not None:
            trail.record(
                HookDisclosure(
                    patient_reference=hook_request.patient_reference,
                    service_id=service.id,
                    hook_instance=hook_request.hook_instance,
                    card_uuids=[card["uuid"] for card in cards],
                    caller=issuer.iss if issuer is not None else None,
                    trace_id=_trace_id(span),
                    recorded=datetime.now(UTC),
                    system_actions=system_actions,
                )
            )
        for card in cards:
            metrics.cards_served.labels(indicator=card["indicator"]).inc()
        metrics.hook_duration.labels(hook=service.hook).observe(time.perf_counter() - started)
        answer: dict[str, Any] = {"cards": cards}
        if system_actions:  # optional: left out rather than sent empty
            answer["systemActions"] = system_actions
            metrics.system_actions_served.inc(len(system_actions))
        return JSONResponse(answer)

    async def _answer(
        service: CdsService,
        hook_request: HookRequest,
        patient_key: str,
        issuer: TrustedIssuer | None,
    ) -> Answer:
        span = trace.get_current_span()
        if service.active_version is None:
            span.set_attribute("cdsflow.reason", "shadow-only")
            return [], []
        if hook_request.hook not in ORDER_HOOKS:
            if not store.rebuilt:
                metrics.answers_before_rebuild.inc()
                span.set_attribute("cdsflow.reason", "state-not-rebuilt")
                return [], []
            entry = store.latest_active(patient_key, service.adapter_id)
            if entry is not None:
                span.set_attribute(
                    "cdsflow.recommendation_id", entry.recommendation.recommendation_id
                )
                trace_id = None
                if entry.trace_link is not None:
                    span.add_link(entry.trace_link)
                    trace_id = format(entry.trace_link.trace_id, "032x")
                key = (entry.recommendation.recommendation_id, trace_id)
                answer = rendered.get(key)
                if answer is None:
                    if len(rendered) >= RENDERED_CARDS_KEPT:
                        rendered.clear()
                    answer = rendered[key] = (
                        cards_for(entry.recommendation, trace_id),
                        system_actions_json(entry.recommendation),
                    )
                return answer
        scoring = on_demand()
        if scoring is None:
            span.set_attribute("cdsflow.outcome", "no-model")
            return [], []
        result = await scoring.score(service, hook_request, patient_key=patient_key, issuer=issuer)
        metrics.on_demand.labels(outcome=result.outcome).inc()
        span.set_attribute("cdsflow.outcome", f"on-demand-{result.outcome}")
        if result.recommendation is None:
            return [], []
        scored = stored(result.recommendation)
        store.remember_cards(scored)  # its feedback finds the model it came from
        span.set_attribute("cdsflow.recommendation_id", result.recommendation.recommendation_id)
        return cards_for(result.recommendation), system_actions_json(result.recommendation)

    return router


def _trace_id(span: trace.Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
