"""HTTP handlers for R4 rest-hook notifications: check, decode, call the domain, publish.

`PUT {endpoint}/{type}/{id}` carries a full resource; `POST {endpoint}` with an empty body is
a ping. The rule for every notification:

- what is wrong with the request itself (secret, media type, size, not JSON, not FHIR) is
  refused with a 4xx and publishes nothing;
- an authenticated, well-formed notification is acknowledged (2xx) once what can be used from
  it is on Kafka: a usable resource as a `ClinicalEvent`, a resource cdsflow cannot use
  (no patient, another server's patient) recorded on the `.dlq` twin with its reason;
- 503 with `Retry-After` when the broker did not acknowledge: the EHR should retry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
    UnusableResource,
    bearer_secret_matches,
    build_clinical_event,
    patient_reference_of,
    read_notified_resource,
    unauthorized,
    unsupported_notification_bundle,
)
from cdsflow.listener.settings import Settings
from cdsflow.service import (
    RequestRefused,
    read_bounded_body,
    require_json_media_type,
    single_header,
)
from cdsflow.telemetry import MetricsRegistry, PatientKeyer

log = logging.getLogger("cdsflow.listener")

REST_HOOK_ENDPOINT = "/fhir/notifications/rest-hook"
JSON_MEDIA_TYPES = ("application/fhir+json", "application/json")


class PublishUnavailable(Exception):
    """The broker did not acknowledge in time, or cannot be reached: the EHR should retry."""


class ClinicalEventPublisher(Protocol):
    """Publishes to Kafka and returns once the broker acknowledged."""

    async def publish(self, event: ClinicalEvent) -> None:
        """The event on the clinical-events topic; raise `PublishUnavailable` if not acked."""

    async def record_unusable(self, event: ClinicalEvent, unusable: UnusableResource) -> None:
        """The event on the `.dlq` twin with its reason; raise `PublishUnavailable` if not
        acked."""


@dataclass(frozen=True)
class ListenerMetrics:
    notifications: Counter
    unusable_resources: Counter
    publish_seconds: Histogram

    @classmethod
    def register(cls, registry: MetricsRegistry) -> ListenerMetrics:
        return cls(
            notifications=registry.counter(
                "listener_notifications",
                "Notifications received, by kind and outcome",
                ("kind", "outcome"),
            ),
            unusable_resources=registry.counter(
                "listener_unusable_resources",
                "Acknowledged resources that cdsflow cannot use, recorded on the .dlq twin",
                ("resource_type", "reason"),
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
    with _counting_failures(intake, REST_HOOK_FULL_RESOURCE):
        try:
            raw = await _authorized_body(request, intake.settings)
            resource = read_notified_resource(raw, resource_type, resource_id)
        except (NotificationRejected, RequestRefused) as refusal:
            return _refused(intake, REST_HOOK_FULL_RESOURCE, _rejection(refusal))
        span.set_attribute("cdsflow.resource_type", resource_type)
        received_at = datetime.now(UTC)
        try:
            patient_reference = patient_reference_of(resource, intake.settings.ehr_base_url)
        except UnusableResource as unusable:
            return await _record_unusable(intake, resource, raw, unusable, received_at)
        event = build_clinical_event(
            resource,
            raw,
            kind=NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE,
            ehr_base_url=intake.settings.ehr_base_url,
            patient_reference=patient_reference,
            patient_key=intake.patient_keyer.patient_key(patient_reference),
            received_at=received_at,
        )
        span.set_attribute("cdsflow.event_id", event.event_id)
        span.set_attribute("cdsflow.patient_key", event.patient_key)
        started = time.perf_counter()
        try:
            await intake.publisher.publish(event)
        except PublishUnavailable as exc:
            return _retry_later(intake, event, exc)
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
    with _counting_failures(intake, REST_HOOK_PING):
        try:
            raw = await _authorized_body(request, intake.settings)
            if raw.strip():
                raise unsupported_notification_bundle()
        except (NotificationRejected, RequestRefused) as refusal:
            return _refused(intake, REST_HOOK_PING, _rejection(refusal))
        intake.metrics.notifications.labels(REST_HOOK_PING, "acknowledged").inc()
        return outcome_response(
            200, operation_outcome("informational", "ping received", "information")
        )


async def _record_unusable(
    intake: NotificationIntake,
    resource: dict[str, Any],
    raw: bytes,
    unusable: UnusableResource,
    received_at: datetime,
) -> Response:
    """Acknowledge a resource cdsflow cannot use, once it is recorded on the `.dlq` twin."""
    event = build_clinical_event(
        resource,
        raw,
        kind=NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE,
        ehr_base_url=intake.settings.ehr_base_url,
        patient_reference="",
        patient_key="",
        received_at=received_at,
    )
    span = trace.get_current_span()
    span.set_attributes(
        {
            "cdsflow.event_id": event.event_id,
            "cdsflow.outcome": "recorded-unusable",
            "cdsflow.reason": unusable.reason,
        }
    )
    try:
        await intake.publisher.record_unusable(event, unusable)
    except PublishUnavailable as exc:
        return _retry_later(intake, event, exc)
    intake.metrics.notifications.labels(REST_HOOK_FULL_RESOURCE, "recorded-unusable").inc()
    intake.metrics.unusable_resources.labels(event.resource_type, unusable.reason).inc()
    log.info(
        "resource recorded as unusable",
        extra={"event_id": event.event_id, "reason": unusable.reason},
    )
    outcome = operation_outcome(
        "business-rule",
        f"acknowledged and recorded, not used ({unusable.reason}): {unusable.description}",
        "warning",
        expression=list(unusable.expression),
    )
    return outcome_response(200, outcome)


def _retry_later(intake: NotificationIntake, event: ClinicalEvent, exc: Exception) -> Response:
    intake.metrics.notifications.labels(REST_HOOK_FULL_RESOURCE, "unavailable").inc()
    log.warning(
        "not acknowledged by the broker; asking the EHR to retry",
        extra={"event_id": event.event_id, "error_type": type(exc.__cause__ or exc).__name__},
    )
    return outcome_response(
        503,
        operation_outcome("transient", "the event broker is unavailable; retry later"),
        headers={"Retry-After": str(intake.settings.retry_after_s)},
    )


@contextmanager
def _counting_failures(intake: NotificationIntake, kind: str) -> Iterator[None]:
    """Counts an unexpected failure as outcome `error` before it becomes a 500."""
    try:
        yield
    except Exception:
        intake.metrics.notifications.labels(kind, "error").inc()
        raise


async def _authorized_body(request: Request, settings: Settings) -> bytes:
    """The body, once the secret, the media type and the size are acceptable."""
    authorization = single_header(request, "authorization")
    if not bearer_secret_matches(authorization, settings.channel_secret.get_secret_value()):
        raise unauthorized()
    require_json_media_type(request, JSON_MEDIA_TYPES)
    return await read_bounded_body(request, settings.max_notification_bytes)


def _rejection(refusal: NotificationRejected | RequestRefused) -> NotificationRejected:
    if isinstance(refusal, NotificationRejected):
        return refusal
    return NotificationRejected(
        status_code=refusal.status_code,
        issue_code=refusal.issue_code,
        reason=refusal.reason,
        diagnostics=refusal.description,
    )


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
