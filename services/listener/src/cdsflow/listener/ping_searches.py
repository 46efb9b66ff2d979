"""What a ping leaves out: an R4 rest-hook without a payload says only that something matching
the channel's criteria changed. The listener searches the EHR for what changed since the
channel's checkpoint and publishes it, as if each resource had been notified in full.

The checkpoint is the newest `meta.lastUpdated` found, less a second of overlap (the EHR may
still be writing resources with that same instant); what the overlap finds again is already
published, and the dedupe memory acknowledges it without publishing. After a start, the first
search looks back `CDSFLOW_PING_LOOKBACK_S`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import Response
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import (
    EhrError,
    InvalidResource,
    is_ehr_outage,
    operation_outcome,
    validate_resource,
)
from cdsflow.listener.domain import REST_HOOK_PING
from cdsflow.listener.intake import (
    NotificationIntake,
    PublishUnavailable,
    outcome_response,
    publish_acked,
    record_unusable_acked,
    retry_later,
)
from cdsflow.listener.subscriptions import ChannelState
from cdsflow.listener.topic_notifications import resource_delivery

log = logging.getLogger("cdsflow.listener")

PING_KIND = NotificationKind.NOTIFICATION_KIND_REST_HOOK_PING
_OVERLAP = timedelta(seconds=1)
_PAGE_SIZE = "100"
_MAX_PAGES = 20


async def answer_ping(intake: NotificationIntake, channel: ChannelState | None) -> Response:
    """Search what changed for the channel's criteria, publish it, then acknowledge."""
    criteria = channel.channel.criteria if channel is not None else None
    if channel is None or criteria is None:
        intake.count(REST_HOOK_PING, "acknowledged")
        return outcome_response(
            200,
            operation_outcome(
                "informational",
                "ping received; it names no channel with criteria, so nothing is searched",
                "information",
            ),
        )
    async with channel.search_lock:
        received_at = datetime.now(UTC)
        since = channel.checkpoint or received_at - timedelta(
            seconds=intake.settings.ping_lookback_s
        )
        try:
            found = await _changed_since(intake, criteria, since)
        except (EhrError, httpx.HTTPError) as exc:
            if is_ehr_outage(exc):
                return retry_later(intake, REST_HOOK_PING, exc, what="the EHR")
            intake.count(REST_HOOK_PING, "search-refused")
            log.warning(
                "the EHR refused the channel's search",
                extra={"channel": channel.channel.name, "error_type": type(exc).__name__},
            )
            return outcome_response(
                200,
                operation_outcome(
                    "processing",
                    "ping acknowledged; the EHR refused the search for what changed",
                    "warning",
                ),
            )
        published = 0
        try:
            for resource in found:
                delivery = resource_delivery(intake, resource, PING_KIND, received_at)
                if delivery.unusable is not None:
                    await record_unusable_acked(intake, delivery.event, delivery.unusable)
                elif await publish_acked(intake, delivery.event):
                    published += 1
        except PublishUnavailable as exc:
            return retry_later(intake, REST_HOOK_PING, exc)
        newest = max(
            (moment for r in found if (moment := _last_updated(r)) is not None), default=None
        )
        if newest is not None:
            channel.checkpoint = max(since, newest - _OVERLAP)
    trace.get_current_span().set_attributes(
        {"cdsflow.found": len(found), "cdsflow.published": published}
    )
    intake.count(REST_HOOK_PING, "searched")
    return outcome_response(
        200,
        operation_outcome(
            "informational",
            f"ping received; {len(found)} changed found, {published} published",
            "information",
        ),
    )


async def _changed_since(
    intake: NotificationIntake, criteria: str, since: datetime
) -> list[dict[str, Any]]:
    """The criteria's resources updated after `since`, oldest first; valid ones only."""
    resource_type, _, query = criteria.partition("?")
    params = list(httpx.QueryParams(query).multi_items())
    params += [
        ("_lastUpdated", f"gt{since.isoformat()}"),
        ("_sort", "_lastUpdated"),
        ("_count", _PAGE_SIZE),
    ]
    found = await intake.ehr.search(resource_type, params, max_pages=_MAX_PAGES)
    valid = []
    for resource in found:
        if resource.get("resourceType") != resource_type:
            continue
        try:
            validate_resource(resource)
        except InvalidResource:
            continue  # not what the criteria asked for; nothing to publish
        valid.append(resource)
    return valid


def _last_updated(resource: dict[str, Any]) -> datetime | None:
    meta = resource.get("meta")
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
