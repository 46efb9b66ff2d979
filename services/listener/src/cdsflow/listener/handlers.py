"""HTTP handlers for R4 rest-hook notifications: check, decode, call the domain, publish.

`PUT {endpoint}/{type}/{id}` carries a full resource; `POST {endpoint}` with an empty body is
a ping. The answer is 2xx only once the broker has acknowledged the clinical event, so an EHR
that retries on anything else loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from opentelemetry import trace
from prometheus_client import Counter, Histogram

from cdsflow.contracts import ClinicalEvent, NotificationKind
from cdsflow.fhir import FHIR_JSON, operation_outcome
from cdsflow.listener.domain import (
    REST_HOOK_FULL_RESOURCE,
    REST_HOOK_PING,
    NotificationRejected,
    bearer_secret_matches,
    build_clinical_event,
    patient_reference_of,
    read_notified_resource,
    too_large,
    unauthorized,
    unsupported_media_type,
    unsupported_notification_bundle,
)
from cdsflow.listener.settings import Settings
from cdsflow.telemetry import MetricsRegistry, PatientKeyer

log = logging.getLogger("cdsflow.listener")

REST_HOOK_ENDPOINT = "/fhir/notifications/rest-hook"
_JSON_MEDIA_TYPES = ("application/fhir+json", "application/json")


class PublishUnavailable(Exception):
    """The broker did not acknowledge in time, or cannot be reached: the EHR should retry."""


class ClinicalEventPublisher(Protocol):
    """Publishes one event and returns once the broker acknowledged it."""

    async def publish(self, event: ClinicalEvent) -> None:
        """Raise `PublishUnavailable` when the event was not acknowledged."""


@dataclass(frozen=True)
class ListenerMetrics:
    notifications: Counter
    publish_seconds: Histogram

    @classmethod
    def register(cls, registry: MetricsRegistry) -> ListenerMetrics:
        return cls(
            notifications=registry.counter(
                "listener_notifications",
                "Notifications received, by kind and outcome",
                ("kind", "outcome"),
            ),
            publish_seconds=registry.histogram(
                "listener_publish_seconds",
                "Time from publish to the broker's acknowledgement of a clinical event",
            ),
        )


@dataclass(frozen=True)
class NotificationIntake:
    """What the handlers need; built in the app's lifespan and kept on `app.state.intake`."""

    settings: Settings
    publisher: ClinicalEventPublisher
    patient_keyer: PatientKeyer
    metrics: ListenerMetrics


def notification_intake(request: Request) -> NotificationIntake:
    intake = getattr(request.app.state, "intake", None)
    if not isinstance(intake, NotificationIntake):
        raise RuntimeError("the listener's lifespan has not run")
    return intake


Intake = Annotated[NotificationIntake, Depends(notification_intake)]
router = APIRouter(prefix=REST_HOOK_ENDPOINT, tags=["notifications"])


@router.put("/{resource_type}/{resource_id}")
async def receive_full_resource(
    resource_type: str, resource_id: str, request: Request, intake: Intake
) -> Response:
    """R4 rest-hook with a payload: the changed resource, delivered at its type and id."""
    span = trace.get_current_span()
    span.set_attribute("cdsflow.notification_kind", REST_HOOK_FULL_RESOURCE)
    try:
        raw = await _authorized_body(request, intake.settings)
        resource = read_notified_resource(raw, resource_type, resource_id)
        span.set_attribute("cdsflow.resource_type", resource_type)
        patient_reference = patient_reference_of(resource, intake.settings.ehr_base_url)
    except NotificationRejected as rejection:
        return _refused(intake, REST_HOOK_FULL_RESOURCE, rejection)

    event = build_clinical_event(
        resource,
        raw,
        kind=NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE,
        ehr_base_url=intake.settings.ehr_base_url,
        patient_reference=patient_reference,
        patient_key=intake.patient_keyer.patient_key(patient_reference),
        received_at=datetime.now(UTC),
    )
    span.set_attribute("cdsflow.event_id", event.event_id)
    span.set_attribute("cdsflow.patient_key", event.patient_key)

    started = time.perf_counter()
    try:
        await intake.publisher.publish(event)
    except PublishUnavailable as exc:
        intake.metrics.notifications.labels(REST_HOOK_FULL_RESOURCE, "unavailable").inc()
        log.warning(
            "clinical event not acknowledged by the broker; asking the EHR to retry",
            extra={"event_id": event.event_id, "error_type": type(exc.__cause__ or exc).__name__},
        )
        return outcome_response(
            503,
            operation_outcome("transient", "the event broker is unavailable; retry later"),
            headers={"Retry-After": str(intake.settings.retry_after_s)},
        )
    intake.metrics.publish_seconds.observe(time.perf_counter() - started)
    intake.metrics.notifications.labels(REST_HOOK_FULL_RESOURCE, "published").inc()
    log.info(
        "clinical event published",
        extra={
            "event_id": event.event_id,
            "patient_key": event.patient_key,
            "resource_type": event.resource_type,
        },
    )
    return outcome_response(
        200,
        operation_outcome(
            "informational", f"clinical event {event.event_id} published", "information"
        ),
    )


@router.post("")
async def receive_ping(request: Request, intake: Intake) -> Response:
    """R4 rest-hook without a payload (an empty body): something matching changed.

    Acknowledged and counted; fetching what changed comes with a later issue.
    """
    trace.get_current_span().set_attribute("cdsflow.notification_kind", REST_HOOK_PING)
    try:
        raw = await _authorized_body(request, intake.settings)
        if raw.strip():
            raise unsupported_notification_bundle()
    except NotificationRejected as rejection:
        return _refused(intake, REST_HOOK_PING, rejection)
    intake.metrics.notifications.labels(REST_HOOK_PING, "acknowledged").inc()
    return outcome_response(200, operation_outcome("informational", "ping received", "information"))


async def _authorized_body(request: Request, settings: Settings) -> bytes:
    """The body, once the secret, the media type and the size are acceptable."""
    secret = settings.channel_secret.get_secret_value()
    if not bearer_secret_matches(request.headers.get("authorization"), secret):
        raise unauthorized()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in _JSON_MEDIA_TYPES:
        raise unsupported_media_type()
    return await _bounded_body(request, settings.max_notification_bytes)


async def _bounded_body(request: Request, limit_bytes: int) -> bytes:
    """Read at most `limit_bytes`: refuse early on Content-Length, and again while reading."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise too_large(limit_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit_bytes:
            raise too_large(limit_bytes)
    return bytes(body)


def _refused(intake: NotificationIntake, kind: str, rejection: NotificationRejected) -> Response:
    intake.metrics.notifications.labels(kind, rejection.reason).inc()
    log.info("notification refused", extra={"kind": kind, "reason": rejection.reason})
    headers = {"WWW-Authenticate": "Bearer"} if rejection.status_code == 401 else None
    outcome = operation_outcome(
        rejection.issue_code, rejection.diagnostics, expression=list(rejection.expression)
    )
    return outcome_response(rejection.status_code, outcome, headers=headers)


def outcome_response(
    status_code: int, outcome: dict[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    """An OperationOutcome answer as `application/fhir+json`."""
    return JSONResponse(outcome, status_code=status_code, media_type=FHIR_JSON, headers=headers)
