"""Topic-based notification Bundles (R4/R4B backport, R5) posted to the rest-hook endpoint.

handshake, heartbeat and query-status are acknowledged and counted (a 2xx to the handshake is
what activates the channel). event-notification and query-event become one `ClinicalEvent`
per event: the resource the Bundle carries (full-resource), or the focus read from the
configured EHR (id-only); an empty payload is acknowledged and counted. Every event is on
Kafka, published or recorded as unusable, before the 2xx.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import Response
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import (
    EhrError,
    InvalidResource,
    operation_outcome,
    validate_resource,
)
from cdsflow.listener.additional_context import context_deliveries
from cdsflow.listener.changed_since import publish_changed_since_checkpoint
from cdsflow.listener.domain import (
    EVENT_TYPES,
    FOCUS_NOT_FOUND,
    FOREIGN_FOCUS,
    R5,
    TOPIC_NOTIFICATION,
    UNREADABLE_FOCUS,
    NotificationEvent,
    NotificationRejected,
    SubscriptionNotification,
    UnusableResource,
    build_focus_record,
    focus_on_ehr,
    reference_path,
    subscription_id_of,
    topic_kind,
    validate_event_resource,
)
from cdsflow.listener.domain.rejections import bad_request
from cdsflow.listener.ehr_failures import worth_a_retry
from cdsflow.listener.ehr_reads import EhrAnswerTooLarge
from cdsflow.listener.intake import (
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
from cdsflow.listener.resource_deliveries import (
    EventDelivery,
    r5_only_delivery,
    resource_delivery,
)
from cdsflow.listener.subscriptions import ChannelState

FULL_RESOURCE_KIND = NotificationKind.NOTIFICATION_KIND_TOPIC_FULL_RESOURCE
ID_ONLY_KIND = NotificationKind.NOTIFICATION_KIND_TOPIC_ID_ONLY
EMPTY_KIND = NotificationKind.NOTIFICATION_KIND_TOPIC_EMPTY

log = logging.getLogger("cdsflow.listener")


class EhrUnavailable(Exception):
    """The EHR could not be read: the notification is answered 503 and retried."""


async def receive_topic_notification(
    notification: SubscriptionNotification,
    intake: NotificationIntake,
    channel: ChannelState | None = None,
) -> Response:
    """The answer to a notification Bundle, once what it carries is on Kafka.

    From a managed channel, the Bundle must name that channel's Subscription (once its id is
    known): a Bundle naming another one is refused."""
    span = trace.get_current_span()
    if channel is not None:
        try:
            require_channel_subscription(notification, channel)
        except NotificationRejected as rejection:
            span.set_attribute("cdsflow.notification_kind", TOPIC_NOTIFICATION)
            return refused(intake, TOPIC_NOTIFICATION, rejection)
    kind = topic_kind(notification.notification_type)
    span.set_attributes(
        {
            "cdsflow.notification_kind": kind,
            "cdsflow.notification_shape": notification.shape,
            "cdsflow.payload_content": notification.payload,
            "cdsflow.event_count": len(notification.events),
        }
    )
    with counting_failures(intake, kind):
        if notification.notification_type not in EVENT_TYPES:
            _note_numbers(intake, channel, notification)
            intake.count(kind, "acknowledged")
            return outcome_response(
                200,
                operation_outcome(
                    "informational", f"{notification.notification_type} received", "information"
                ),
            )
        search = channel.channel.search_for_gaps if channel is not None else None
        if notification.payload == "empty" and channel is not None and search is not None:
            return await _search_what_changed(intake, kind, channel, search, notification)
        received_at = datetime.now(UTC)
        try:
            checked = checked_resources(notification)
        except NotificationRejected as rejection:
            return refused(intake, kind, rejection)
        try:
            fresh = await unpublished_events(intake, checked)
        except PublishUnavailable as exc:
            return retry_later(intake, kind, exc)
        if notification.events and not fresh.events:
            _note_numbers(intake, channel, notification)
            return _all_already_published(intake, kind, notification)
        try:
            deliveries = await event_deliveries(fresh, intake, received_at)
        except NotificationRejected as rejection:
            return refused(intake, kind, rejection)
        except EhrUnavailable as exc:
            return retry_later(intake, kind, exc, what="the EHR")
        already_published: set[str] = set()
        try:
            for delivery in deliveries:
                if delivery.unusable is None:
                    if not await publish_acked(intake, delivery.event):
                        already_published.add(delivery.event.event_id)
                else:
                    await record_unusable_acked(intake, delivery.event, delivery.unusable)
        except PublishUnavailable as exc:
            return retry_later(intake, kind, exc)
        _note_numbers(intake, channel, notification)
        return _acknowledged(intake, kind, deliveries, already_published)


async def _search_what_changed(
    intake: NotificationIntake,
    kind: str,
    channel: ChannelState,
    search: str,
    notification: SubscriptionNotification,
) -> Response:
    """An empty payload names nothing: what changed since the channel's checkpoint is
    searched (its `recovery_search`) and published, as for a ping."""
    try:
        outcome = await publish_changed_since_checkpoint(intake, channel, search, EMPTY_KIND)
    except PublishUnavailable as exc:
        return retry_later(intake, kind, exc)
    except (EhrError, httpx.HTTPError) as exc:
        if worth_a_retry(exc):
            return retry_later(intake, kind, exc, what="the EHR")
        intake.count(kind, "search-refused")
        return outcome_response(
            200,
            operation_outcome(
                "processing",
                "empty payload acknowledged; the EHR refused the search for what changed",
                "warning",
            ),
        )
    _note_numbers(intake, channel, notification)
    intake.count(kind, "searched")
    trace.get_current_span().set_attributes(
        {"cdsflow.found": outcome.found, "cdsflow.published": outcome.published}
    )
    return outcome_response(
        200,
        operation_outcome(
            "informational",
            f"empty payload: {outcome.found} changed found, {outcome.published} published",
            "information",
        ),
    )


async def unpublished_events(
    intake: NotificationIntake, notification: SubscriptionNotification
) -> SubscriptionNotification:
    """The notification without the events whose (Subscription, event number) is already on
    the topic: a redelivery publishes nothing, even when what it carries differs (an id-only
    focus read again after a later change; an EHR that builds the payload on each attempt).

    `PublishUnavailable` while the topic is not read back: a "not seen" could be wrong."""
    if not await intake.published.wait_caught_up(intake.settings.publish_timeout_s):
        raise PublishUnavailable("the clinical-events topic is not read back yet")
    subscription_id = subscription_id_of(notification.subscription)
    fresh = []
    for event in notification.events:
        if intake.published.has_event_number(subscription_id, event.event_number):
            resource_type = _event_resource_type(event)
            intake.metrics.duplicate_events.labels(resource_type).inc()
            log.info(
                "notification event already published",
                extra={"event_number": event.event_number, "resource_type": resource_type},
            )
        else:
            fresh.append(event)
    return dataclasses.replace(notification, events=tuple(fresh))


def _event_resource_type(event: NotificationEvent) -> str:
    if event.resource is not None:
        return str(event.resource.get("resourceType") or "unknown")
    path = reference_path(event.focus) if event.focus is not None else None
    return path.partition("/")[0] if path is not None else "unknown"


def _all_already_published(
    intake: NotificationIntake, kind: str, notification: SubscriptionNotification
) -> Response:
    numbers = ", ".join(str(event.event_number) for event in notification.events)
    intake.count(kind, "already-published")
    trace.get_current_span().set_attribute("cdsflow.outcome", "already-published")
    return outcome_response(
        200,
        operation_outcome(
            "informational",
            f"notification events {numbers} of the Subscription already published",
            "information",
        ),
    )


def _note_numbers(
    intake: NotificationIntake,
    channel: ChannelState | None,
    notification: SubscriptionNotification,
) -> None:
    """Once acknowledged: the channel's event numbers move on; a gap is recovered."""
    if channel is None or intake.subscriptions is None:
        return
    numbers = [event.event_number for event in notification.events]
    if intake.subscriptions.note_notification(
        channel, notification.events_since_subscription_start, numbers
    ):
        trace.get_current_span().set_attribute("cdsflow.gap_detected", True)
    if notification.status == "error":
        intake.subscriptions.note_status_error(channel)


def require_channel_subscription(
    notification: SubscriptionNotification, channel: ChannelState
) -> None:
    """400 when the status entry names a Subscription other than the channel's."""
    expected = channel.subscription_id
    named = notification.subscription.rstrip("/").split("/_history/")[0]
    if expected is not None and not named.endswith(f"Subscription/{expected}"):
        raise bad_request(
            "invalid",
            "another-subscription",
            "the notification's status names a Subscription that is not this channel's",
            "Bundle.entry[0].resource",
        )


def checked_resources(notification: SubscriptionNotification) -> SubscriptionNotification:
    """Every resource the Bundle carries checked before anything is read or published, so a
    malformed Bundle publishes nothing (`NotificationRejected`, 400); in an R5 Bundle, one
    valid in R5 only is marked `r5_only` (recorded, not published)."""
    events = []
    for index, event in enumerate(notification.events):
        if event.resource is not None:
            r4 = validate_event_resource(
                event.resource,
                f"notificationEvent[{index}].focus resource",
                r5=notification.shape == R5,
            )
            event = dataclasses.replace(event, r5_only=not r4)
        events.append(event)
    return dataclasses.replace(notification, events=tuple(events))


async def event_deliveries(
    notification: SubscriptionNotification,
    intake: NotificationIntake,
    received_at: datetime,
    kind: NotificationKind.ValueType | None = None,
) -> list[EventDelivery]:
    """One delivery per event that names its resource, of a notification whose resources
    are `checked_resources`. `kind`: the events' `source.kind` (by default, by payload:
    full-resource or id-only)."""
    subscription_id = subscription_id_of(notification.subscription)
    deliveries = []
    for event in notification.events:
        if event.resource is not None:
            make = r5_only_delivery if event.r5_only else resource_delivery
            delivery = make(intake, event.resource, kind or FULL_RESOURCE_KIND, received_at)
        elif event.focus is not None:
            delivery = await _fetched_delivery(intake, event, received_at, kind)
        else:
            continue
        # where it came from: the (Subscription, event number) index of the dedupe memory
        _stamp_source(delivery, notification, subscription_id, event.event_number)
        deliveries.append(delivery)
        for context in context_deliveries(intake, event, kind or FULL_RESOURCE_KIND, received_at):
            _stamp_source(context, notification, subscription_id, 0)
            deliveries.append(context)
    return deliveries


def _stamp_source(
    delivery: EventDelivery,
    notification: SubscriptionNotification,
    subscription_id: str,
    event_number: int,
) -> None:
    source = delivery.event.source
    source.subscription_id = subscription_id
    source.event_number = event_number
    source.topic = notification.topic or ""


async def _fetched_delivery(
    intake: NotificationIntake,
    event: NotificationEvent,
    received_at: datetime,
    kind: NotificationKind.ValueType | None,
) -> EventDelivery:
    """An id-only event: its focus read from the configured EHR, and nowhere else."""
    assert event.focus is not None
    base_url = intake.settings.ehr_base_url
    focus = focus_on_ehr(event.focus, base_url)
    if focus is None:
        return _focus_record(
            intake,
            event.focus,
            received_at,
            UnusableResource(
                FOREIGN_FOCUS,
                "the focus is not a resource on the configured EHR; it was not read",
                "focus",
            ),
        )
    try:
        resource = await intake.ehr.read(focus.resource_type, focus.resource_id)
    except EhrAnswerTooLarge:
        resource = {}
    except (EhrError, httpx.HTTPError) as exc:
        if worth_a_retry(exc):
            raise EhrUnavailable(type(exc).__name__) from exc
        # a redirect (never followed), a refusal, an unreadable answer: a retry won't help
        resource = {}
    if resource is None:
        unusable = UnusableResource(
            FOCUS_NOT_FOUND, "the EHR no longer has the focus (404 or 410)", "focus"
        )
        return _focus_record(intake, event.focus, received_at, unusable)
    if not _is_the_focus(resource, focus.resource_type, focus.resource_id):
        unusable = UnusableResource(
            UNREADABLE_FOCUS,
            "the EHR answered the read of the focus with something other than a valid "
            "resource of its type and id (a redirect, a refusal, another resource, or one "
            "larger than the listener accepts)",
            "focus",
        )
        return _focus_record(intake, event.focus, received_at, unusable)
    return resource_delivery(intake, resource, kind or ID_ONLY_KIND, received_at)


def _is_the_focus(resource: dict[str, Any], resource_type: str, resource_id: str) -> bool:
    if (resource.get("resourceType"), resource.get("id")) != (resource_type, resource_id):
        return False
    try:
        validate_resource(resource)
    except InvalidResource:
        return False
    return True


def _focus_record(
    intake: NotificationIntake, focus: str, received_at: datetime, unusable: UnusableResource
) -> EventDelivery:
    event = build_focus_record(
        focus, kind=ID_ONLY_KIND, ehr_base_url=intake.settings.ehr_base_url, received_at=received_at
    )
    return EventDelivery(event, unusable)


def _acknowledged(
    intake: NotificationIntake,
    kind: str,
    deliveries: list[EventDelivery],
    already_published: set[str],
) -> Response:
    usable = [d.event.event_id for d in deliveries if d.unusable is None]
    published = [event_id for event_id in usable if event_id not in already_published]
    unusable = [d.unusable for d in deliveries if d.unusable is not None]
    span = trace.get_current_span()
    span.set_attribute("cdsflow.event_ids", published)
    # the keyed pseudonyms of the patients it carried: how an SRE finds a patient's trace
    keys = sorted({d.event.patient_key for d in deliveries if d.event.patient_key})
    span.set_attribute("cdsflow.patient_keys", keys)
    if not deliveries:
        intake.count(kind, "acknowledged-empty")
        return outcome_response(
            200,
            operation_outcome(
                "informational",
                "empty payload acknowledged; the channel declares no search for what changed",
                "information",
            ),
        )
    if not usable:
        intake.count(kind, "recorded-unusable")
        span.set_attribute("cdsflow.outcome", "recorded-unusable")
        return outcome_response(200, unusable_outcome(unusable[0]))
    outcome = "published" if published else "already-published"
    intake.count(kind, outcome)
    span.set_attribute("cdsflow.outcome", outcome)
    parts = [f"clinical events {', '.join(published)} published"] if published else []
    if already_published:
        parts.append(f"{', '.join(sorted(already_published))} already published")
    if unusable:
        parts.append(f"{len(unusable)} recorded as unusable")
    return outcome_response(
        200, operation_outcome("informational", "; ".join(parts), "information")
    )
