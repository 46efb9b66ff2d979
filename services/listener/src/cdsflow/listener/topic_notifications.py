"""Topic-based notification Bundles (R4/R4B backport, R5) posted to the rest-hook endpoint.

handshake, heartbeat and query-status are acknowledged and counted (a 2xx to the handshake is
what activates the channel). event-notification and query-event become one `ClinicalEvent`
per event: the resource the Bundle carries (full-resource), or the focus read from the
configured EHR (id-only), with its carried additional context (`notification_events`); an
empty payload is searched for (a channel with a recovery search) or acknowledged and
counted. Every event is on Kafka, published or recorded as unusable, before the 2xx; a
redelivered event (same Subscription and event number) publishes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from fastapi import Response
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import EhrError, operation_outcome
from cdsflow.listener.changed_since import publish_changed_since_checkpoint
from cdsflow.listener.domain import (
    EVENT_TYPES,
    TOPIC_NOTIFICATION,
    NotificationRejected,
    SubscriptionNotification,
    topic_kind,
)
from cdsflow.listener.domain.rejections import bad_request
from cdsflow.listener.ehr_failures import worth_a_retry
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
from cdsflow.listener.notification_events import (
    EhrUnavailable,
    checked_resources,
    event_deliveries,
    unpublished_events,
)
from cdsflow.listener.resource_deliveries import EventDelivery
from cdsflow.listener.subscriptions import ChannelState

EMPTY_KIND = NotificationKind.NOTIFICATION_KIND_TOPIC_EMPTY


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
