"""`POST /cds-services/{id}/feedback` (CDS Hooks 2.0): what the clinician did with a card.

Authenticated like the hook calls (the JWT's `aud` is this feedback URL), bounded like them;
each entry becomes one `Feedback` event on `cdsflow.feedback.v1`, keyed by the patient key
(or the card's uuid when the card is no longer known), counted by outcome and reason. A
repeated delivery has the same `feedback_id`: one already recorded (by this replica, or read
back from the topic) is acknowledged and neither published nor counted again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry import trace
from prometheus_client import Counter

from cdsflow.contracts import Feedback, FeedbackOutcome
from cdsflow.service import (
    RequestRefused,
    read_bounded_body,
    require_json_media_type,
    single_header,
)
from cdsflow.telemetry import MetricsRegistry
from cdsflow.writeback.client_auth import ClientAuthenticator
from cdsflow.writeback.domain.client_tokens import TokenRejected
from cdsflow.writeback.domain.discovery import CdsService
from cdsflow.writeback.domain.feedback_events import feedback_event, reason_label
from cdsflow.writeback.domain.feedback_requests import parse_feedback_request
from cdsflow.writeback.domain.hook_requests import InvalidHookRequest
from cdsflow.writeback.domain.latest_recommendations import LatestRecommendations
from cdsflow.writeback.domain.recorded_feedback import RecordedFeedback
from cdsflow.writeback.domain.token_claims import ClaimUnconfirmed
from cdsflow.writeback.handlers import (
    HookLimits,
    WritebackMetrics,
    problem_response,
    replay_check_unavailable_response,
    unauthenticated_response,
)

logger = logging.getLogger(__name__)

# distinct override-reason labels counted before the rest are counted as `other`
MAX_REASON_LABELS = 32

FeedbackPublisher = Callable[[Feedback], Awaitable[None]]


class FeedbackCounter:
    """`cdsflow_writeback_feedback_total{outcome, reason, model_version, cds_service}`, with a
    bounded set of reasons; `model_version` is `name/version` of the model whose card it was
    (`unknown` when the writeback no longer holds its recommendation), so that acceptance and
    override rates can be compared per model version and per card (service)."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self._counter: Counter = registry.counter(
            "writeback_feedback",
            "CDS Hooks feedback entries received, by outcome (accepted, overridden), "
            "override reason code (none, a code, or other), model version and CDS service",
            ("outcome", "reason", "model_version", "cds_service"),
        )
        self._reasons: set[str] = {"none", "other"}

    def count(self, event: Feedback) -> None:
        reason = reason_label(event)
        if reason not in self._reasons:
            if len(self._reasons) >= MAX_REASON_LABELS:
                reason = "other"
            else:
                self._reasons.add(reason)
        outcome = (
            "accepted"
            if event.outcome == FeedbackOutcome.FEEDBACK_OUTCOME_ACCEPTED
            else "overridden"
        )
        model = f"{event.model.name}/{event.model.version}" if event.model.name else "unknown"
        self._counter.labels(
            outcome=outcome, reason=reason, model_version=model, cds_service=event.cds_service
        ).inc()


def feedback_router(
    *,
    services: tuple[CdsService, ...],
    store: LatestRecommendations,
    recorded: RecordedFeedback,
    publish: FeedbackPublisher,
    metrics: WritebackMetrics,
    feedback_counter: FeedbackCounter,
    limits: HookLimits,
    client_auth: Callable[[], ClientAuthenticator] | None,
) -> APIRouter:
    router = APIRouter()
    by_id = {service.id: service for service in services}

    @router.post("/cds-services/{service_id}/feedback")
    async def feedback(service_id: str, request: Request) -> JSONResponse:
        service = by_id.get(service_id)
        if service is None:
            metrics.hook_refusals.labels(reason="unknown-service").inc()
            return problem_response(404, "not-found", "there is no CDS service with this id")
        trace.get_current_span().set_attribute("cdsflow.cds_service", service.id)
        try:
            authorization = single_header(request, "authorization")
            if client_auth is not None:
                await client_auth().authenticate(
                    authorization, f"/cds-services/{service.id}/feedback"
                )
            require_json_media_type(request, ("application/json",))
            raw = await read_bounded_body(request, limits.max_body_bytes)
            entries = parse_feedback_request(raw)
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
        received_at = datetime.now(UTC)
        events = [
            feedback_event(
                entry,
                cds_service=service.id,
                received_at=received_at,
                shown=store.showing_card(entry.card_uuid),
            )
            for entry in entries
        ]
        try:
            for event in events:
                if event.feedback_id in recorded:
                    continue
                await publish(event)
                recorded.record(event.feedback_id)
                feedback_counter.count(event)
        except Exception as exc:
            logger.warning(
                "could not publish feedback; the EHR may send it again",
                extra={"error_type": type(exc).__name__},
            )
            return problem_response(
                503, "transient", "the feedback could not be recorded now; send it again"
            )
        return JSONResponse({})

    return router
