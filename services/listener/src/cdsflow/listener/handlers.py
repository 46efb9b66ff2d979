"""HTTP handlers for FHIR Subscription notifications: check, decode, call the domain, publish.

`PUT {endpoint}/{type}/{id}` is an R4 rest-hook with the resource; `POST {endpoint}` with an
empty body is an R4 rest-hook ping, and with a body a topic-based notification Bundle
(`topic_notifications`). The rule for every notification:

- what is wrong with the request itself (secret, media type, size, not JSON, not FHIR) is
  refused with a 4xx and publishes nothing;
- an authenticated, well-formed notification is acknowledged (2xx) once what can be used from
  it is on Kafka: a usable resource as a `ClinicalEvent`, a resource cdsflow cannot use
  (no patient, another server's patient) recorded on the `.dlq` twin with its reason;
- 503 with `Retry-After` when the broker did not acknowledge, or the EHR could not be read:
  the EHR should retry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import operation_outcome
from cdsflow.listener.domain import (
    REST_HOOK_FULL_RESOURCE,
    REST_HOOK_PING,
    TOPIC_NOTIFICATION,
    UnusableResource,
    bearer_secret_matches,
    build_clinical_event,
    patient_reference_of,
    read_notified_resource,
    read_posted_notification,
    read_posted_resource,
    unauthorized,
)
from cdsflow.listener.intake import (
    ClinicalEventPublisher,
    Intake,
    ListenerMetrics,
    NotificationIntake,
    PublishUnavailable,
    counting_failures,
    outcome_response,
    publish_acked,
    record_unusable_acked,
    refused,
    retry_later,
    unusable_outcome,
)
from cdsflow.listener.ping_searches import answer_ping
from cdsflow.listener.subscriptions import ChannelState
from cdsflow.listener.topic_notifications import receive_topic_notification
from cdsflow.service import (
    RequestRefused,
    read_bounded_body,
    require_json_media_type,
    single_header,
)

__all__ = [
    "REST_HOOK_ENDPOINT",
    "ClinicalEventPublisher",
    "ListenerMetrics",
    "NotificationIntake",
    "PublishUnavailable",
    "outcome_response",
    "router",
]

REST_HOOK_ENDPOINT = "/fhir/notifications/rest-hook"
JSON_MEDIA_TYPES = ("application/fhir+json", "application/json")
router = APIRouter(prefix=REST_HOOK_ENDPOINT, tags=["notifications"])


@router.put("/{resource_type}/{resource_id}")
async def receive_full_resource(
    resource_type: str, resource_id: str, request: Request, intake: Intake
) -> Response:
    """R4 rest-hook with a payload: the changed resource, delivered at its type and id."""
    span = trace.get_current_span()
    span.set_attribute("cdsflow.notification_kind", REST_HOOK_FULL_RESOURCE)
    with counting_failures(intake, REST_HOOK_FULL_RESOURCE):
        try:
            raw, _channel = await _authorized_body(request, intake)
            resource = read_notified_resource(raw, resource_type, resource_id)
        except RequestRefused as refusal:
            return refused(intake, REST_HOOK_FULL_RESOURCE, refusal)
        return await _answer_full_resource(intake, raw, resource)


async def _answer_full_resource(
    intake: NotificationIntake, raw: bytes, resource: dict[str, Any]
) -> Response:
    """The notified resource on Kafka (or recorded as unusable), then the answer."""
    span = trace.get_current_span()
    span.set_attribute("cdsflow.resource_type", str(resource["resourceType"]))
    received_at = datetime.now(UTC)
    base_url = intake.settings.ehr_base_url
    found_unusable: UnusableResource | None
    try:
        patient_reference = patient_reference_of(resource, base_url)
    except UnusableResource as unusable:
        patient_reference, found_unusable = "", unusable
    else:
        found_unusable = None
    event = build_clinical_event(
        resource,
        raw,
        kind=NotificationKind.NOTIFICATION_KIND_REST_HOOK_FULL_RESOURCE,
        ehr_base_url=base_url,
        patient_reference=patient_reference,
        patient_key=(
            intake.patient_keyer.patient_key(patient_reference) if patient_reference else ""
        ),
        received_at=received_at,
    )
    span.set_attribute("cdsflow.event_id", event.event_id)
    try:
        if found_unusable is not None:
            span.set_attributes(
                {
                    "cdsflow.outcome": "recorded-unusable",
                    "cdsflow.reason": found_unusable.reason,
                }
            )
            await record_unusable_acked(intake, event, found_unusable)
        else:
            span.set_attribute("cdsflow.patient_key", event.patient_key)
            published = await publish_acked(intake, event)
    except PublishUnavailable as exc:
        return retry_later(intake, REST_HOOK_FULL_RESOURCE, exc)
    if found_unusable is not None:
        intake.count(REST_HOOK_FULL_RESOURCE, "recorded-unusable")
        return outcome_response(200, unusable_outcome(found_unusable))
    outcome = "published" if published else "already-published"
    intake.count(REST_HOOK_FULL_RESOURCE, outcome)
    span.set_attribute("cdsflow.outcome", outcome)
    return outcome_response(
        200,
        operation_outcome(
            "informational",
            f"clinical event {event.event_id} {outcome.replace('-', ' ')}",
            "information",
        ),
    )


@router.post("")
async def receive_notification(request: Request, intake: Intake) -> Response:
    """A rest-hook POST: empty, an R4 ping; otherwise a topic-based notification Bundle.

    A ping from a channel with criteria: what changed since its checkpoint is searched and
    published before the answer (`ping_searches`); any other ping is acknowledged.
    """
    span = trace.get_current_span()
    span.set_attribute("cdsflow.notification_kind", REST_HOOK_PING)
    with counting_failures(intake, REST_HOOK_PING):
        try:
            raw, channel = await _authorized_body(request, intake)
        except RequestRefused as refusal:
            return refused(intake, REST_HOOK_PING, refusal)
        if not raw.strip():
            return await answer_ping(intake, channel)
    try:
        notification = read_posted_notification(raw)
    except RequestRefused as refusal:
        span.set_attribute("cdsflow.notification_kind", TOPIC_NOTIFICATION)
        return refused(intake, TOPIC_NOTIFICATION, refusal)
    if notification is None:
        # an R4 rest-hook that POSTs the changed resource to the endpoint (SEKMET's
        # `post-endpoint`): as a PUT, its type and id taken from the resource itself
        span.set_attribute("cdsflow.notification_kind", REST_HOOK_FULL_RESOURCE)
        with counting_failures(intake, REST_HOOK_FULL_RESOURCE):
            try:
                resource = read_posted_resource(raw)
            except RequestRefused as refusal:
                return refused(intake, REST_HOOK_FULL_RESOURCE, refusal)
            return await _answer_full_resource(intake, raw, resource)
    # counts its own failures, by the notification's kind
    return await receive_topic_notification(notification, intake, channel)


async def _authorized_body(
    request: Request, intake: NotificationIntake
) -> tuple[bytes, ChannelState | None]:
    """The body, once the secret, the media type and the size are acceptable; and the managed
    channel whose secret it carried (None for the static `CDSFLOW_CHANNEL_SECRET`)."""
    authorization = single_header(request, "authorization")
    channel = intake.channel_of(authorization)
    if channel is None and not bearer_secret_matches(
        authorization, intake.settings.channel_secret.get_secret_value()
    ):
        raise unauthorized()
    require_json_media_type(request, JSON_MEDIA_TYPES)
    raw = await read_bounded_body(request, intake.settings.max_notification_bytes)
    if channel is not None and intake.subscriptions is not None:
        intake.subscriptions.note_notification(channel, None)
    return raw, channel
