"""What a ping leaves out: an R4 rest-hook without a payload says only that something matching
the channel's criteria changed. The listener searches the EHR for what changed since the
channel's checkpoint and publishes it (`changed_since`), as if each resource had been
notified in full, before it answers.
"""

from __future__ import annotations

import logging

import httpx
from fastapi import Response
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import EhrError, operation_outcome
from cdsflow.listener.changed_since import publish_changed_since_checkpoint
from cdsflow.listener.domain import REST_HOOK_PING
from cdsflow.listener.ehr_failures import worth_a_retry
from cdsflow.listener.intake import (
    NotificationIntake,
    PublishUnavailable,
    outcome_response,
    retry_later,
)
from cdsflow.listener.subscriptions import ChannelState

log = logging.getLogger("cdsflow.listener")

PING_KIND = NotificationKind.NOTIFICATION_KIND_REST_HOOK_PING


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
    try:
        outcome = await publish_changed_since_checkpoint(intake, channel, criteria, PING_KIND)
    except PublishUnavailable as exc:
        return retry_later(intake, REST_HOOK_PING, exc)
    except (EhrError, httpx.HTTPError) as exc:
        if worth_a_retry(exc):
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
    trace.get_current_span().set_attributes(
        {"cdsflow.found": outcome.found, "cdsflow.published": outcome.published}
    )
    intake.count(REST_HOOK_PING, "searched")
    return outcome_response(
        200,
        operation_outcome(
            "informational",
            f"ping received; {outcome.found} changed found, {outcome.published} published",
            "information",
        ),
    )
