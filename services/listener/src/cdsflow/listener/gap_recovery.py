"""Recovering what a channel's notifications missed: a gap in the event numbers, a
Subscription the EHR put in `error` or `off` (it stopped delivering), or a restart (nothing
listened). The EHR does not resend those; the listener searches the channel's
`recovery_search` (a criteria channel: its criteria) for what changed since its checkpoint
and publishes each change (`source.kind = NOTIFICATION_KIND_GAP_RECOVERY`) in the EHR's
`lastUpdated` order; what was published already is not published again. Each recovery is one
span, `cdsflow.gap_recovery`, with the channel's name.
"""

from __future__ import annotations

import logging

import httpx
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import EhrError
from cdsflow.listener.changed_since import publish_changed_since_checkpoint
from cdsflow.listener.intake import NotificationIntake, PublishUnavailable
from cdsflow.listener.subscriptions import ChannelState, SubscriptionMetrics

log = logging.getLogger("cdsflow.listener")
tracer = trace.get_tracer("cdsflow.listener")

GAP_RECOVERY_KIND = NotificationKind.NOTIFICATION_KIND_GAP_RECOVERY


async def recover_gap(
    intake: NotificationIntake, metrics: SubscriptionMetrics, state: ChannelState
) -> None:
    """Search and publish what the channel may have missed; on failure it stays pending and
    is tried again at the next check."""
    search = state.channel.search_for_gaps
    if search is None:
        return
    name = state.channel.name
    with tracer.start_as_current_span(
        "cdsflow.gap_recovery", attributes={"cdsflow.channel": name}
    ) as span:
        try:
            outcome = await publish_changed_since_checkpoint(
                intake, state, search, GAP_RECOVERY_KIND
            )
        except (EhrError, httpx.HTTPError, PublishUnavailable) as exc:
            span.set_attribute("error.type", type(exc).__name__)
            log.warning(
                "gap recovery failed; trying again at the next check",
                extra={"channel": name, "error_type": type(exc).__name__},
            )
            return
        span.set_attributes(
            {"cdsflow.found": outcome.found, "cdsflow.published": outcome.published}
        )
    state.recovery_pending = False
    state.gaps_recovered += 1
    metrics.gaps.labels(name, "recovered").inc()
    metrics.recovered_events.labels(name).inc(outcome.published)
    log.info(
        "gap recovered",
        extra={"channel": name, "found": outcome.found, "published": outcome.published},
    )
