"""What a topic notification's events become, whoever received them (a notification Bundle
posted by the EHR, or the EHR's `$events` answer in a gap recovery): the carried resources
checked, the events already published dropped (by Subscription and event number), and one
delivery per remaining event — its resource, or its focus read from the configured EHR —
followed by its usable additional context."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

import httpx

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import EhrError, InvalidResource, validate_resource
from cdsflow.listener.additional_context import context_deliveries
from cdsflow.listener.domain import (
    FOCUS_NOT_FOUND,
    FOREIGN_FOCUS,
    R5,
    UNREADABLE_FOCUS,
    NotificationEvent,
    SubscriptionNotification,
    UnusableResource,
    build_focus_record,
    focus_on_ehr,
    reference_path,
    subscription_id_of,
    validate_event_resource,
)
from cdsflow.listener.ehr_failures import worth_a_retry
from cdsflow.listener.intake import NotificationIntake, PublishUnavailable
from cdsflow.listener.resource_deliveries import (
    EventDelivery,
    r5_only_delivery,
    resource_delivery,
)
from cdsflow.service import AnswerTooLarge

FULL_RESOURCE_KIND = NotificationKind.NOTIFICATION_KIND_TOPIC_FULL_RESOURCE
ID_ONLY_KIND = NotificationKind.NOTIFICATION_KIND_TOPIC_ID_ONLY

log = logging.getLogger("cdsflow.listener")


class EhrUnavailable(Exception):
    """The EHR could not be read: the notification is answered 503 and retried."""


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
    except AnswerTooLarge:
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
