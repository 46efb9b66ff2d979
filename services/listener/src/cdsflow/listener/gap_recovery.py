"""Recovering what a channel's notifications missed: a gap in the event numbers, a heartbeat
period of silence, a Subscription the EHR put in `error` or `off` (it stopped delivering), or
a restart (nothing listened). The EHR does not resend those. The listener asks the EHR:

1. `$status` (where the EHR offers it, for a topic channel): how many events it counted. The
   numbers above the last one received, and those that went missing, are what was missed;
   none missed, nothing more is done.
2. `$events` (where the EHR offers it) for those numbers: the missed events themselves, each
   published as its notification would have been (`source.kind =
   NOTIFICATION_KIND_GAP_RECOVERY`, with its Subscription and event number), in event-number
   order, so each patient's events stay in order.
3. Otherwise a search of the channel's `recovery_search` (a criteria channel: its criteria)
   for what changed since its checkpoint, published in the EHR's `lastUpdated` order.

What was published already is not published again (the dedupe memory). Each recovery is one
span, `cdsflow.gap_recovery`, with the channel's name and, as `cdsflow.outcome`, how it went:
`nothing-missed`, `recovered-by-events`, `recovered-by-search` or `unrecoverable`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from opentelemetry import trace

from cdsflow.contracts import NotificationKind
from cdsflow.fhir import EhrError
from cdsflow.listener.changed_since import publish_changed_since_checkpoint
from cdsflow.listener.domain import NotificationRejected, notification_of
from cdsflow.listener.domain.subscription_queries import EVENTS, STATUS, status_from_query
from cdsflow.listener.intake import (
    NotificationIntake,
    PublishUnavailable,
    publish_acked,
    record_unusable_acked,
)
from cdsflow.listener.notification_events import (
    EhrUnavailable,
    checked_resources,
    event_deliveries,
    unpublished_events,
)
from cdsflow.listener.subscriptions import ChannelState, SubscriptionMetrics

log = logging.getLogger("cdsflow.listener")
tracer = trace.get_tracer("cdsflow.listener")

GAP_RECOVERY_KIND = NotificationKind.NOTIFICATION_KIND_GAP_RECOVERY
# the span's `cdsflow.outcome`, by how the gap was recovered
_OUTCOMES = {
    "status": "nothing-missed",
    "events": "recovered-by-events",
    "search": "recovered-by-search",
}
# the most event numbers asked of `$events` at once
_MAX_EVENTS_ASKED = 1000


@dataclass(frozen=True)
class Recovered:
    method: str  # "status" (nothing missed), "events" or "search"
    found: int
    published: int


class Unrecoverable(Exception):
    """Neither `$events` nor a recovery search can recover the gap."""


async def recover_gap(
    intake: NotificationIntake, metrics: SubscriptionMetrics, state: ChannelState
) -> None:
    """Recover what the channel may have missed; on failure it stays pending and is tried
    again at the next check."""
    name = state.channel.name
    with tracer.start_as_current_span(
        "cdsflow.gap_recovery", attributes={"cdsflow.channel": name}
    ) as span:
        try:
            outcome = await _recover(intake, state)
        except Unrecoverable:
            if intake.subscriptions is not None:
                intake.subscriptions.note_unrecoverable(state)
            span.set_attribute("cdsflow.outcome", "unrecoverable")
            return
        except (EhrError, httpx.HTTPError, PublishUnavailable, EhrUnavailable) as exc:
            span.set_attribute("error.type", type(exc).__name__)
            log.warning(
                "gap recovery failed; trying again at the next check",
                extra={"channel": name, "error_type": type(exc).__name__},
            )
            return
        span.set_attributes(
            {
                "cdsflow.outcome": _OUTCOMES[outcome.method],
                "cdsflow.found": outcome.found,
                "cdsflow.published": outcome.published,
            }
        )
    state.recovery_pending = False
    state.unrecovered.clear()
    state.gaps_recovered += 1
    metrics.gaps.labels(name, "recovered").inc()
    metrics.recovered_events.labels(name).inc(outcome.published)
    log.info(
        "gap recovered",
        extra={
            "channel": name,
            "recovery_method": outcome.method,
            "found": outcome.found,
            "published": outcome.published,
        },
    )


async def _recover(intake: NotificationIntake, state: ChannelState) -> Recovered:
    operations = (
        await intake.subscriptions.ehr_operations()
        if intake.subscriptions is not None
        else frozenset()
    )
    missed: list[int] | None = None  # None: not known what was missed
    counted = None
    if state.channel.topic is not None and state.subscription_id and STATUS in operations:
        counted = await _events_counted(intake, state.subscription_id)
        state.events_counted_by_ehr = counted
        missed = _missed_numbers(intake, state, counted)
    if missed == []:
        _caught_up_to(state, counted)
        return Recovered("status", 0, 0)
    search = state.channel.search_for_gaps
    if missed and EVENTS in operations and state.subscription_id:
        found, published, not_returned = await _publish_missed_events(
            intake, state, state.subscription_id, missed
        )
        if not_returned and search is not None:
            # the EHR no longer keeps some of them: what changed is searched for as well
            outcome = await publish_changed_since_checkpoint(
                intake, state, search, GAP_RECOVERY_KIND
            )
            found, published = found + outcome.found, published + outcome.published
        elif not_returned:
            log.warning(
                "the EHR's $events did not return every missed event",
                extra={"channel": state.channel.name, "not_returned": not_returned},
            )
        _caught_up_to(state, counted)
        return Recovered("events", found, published)
    if search is None:
        raise Unrecoverable
    outcome = await publish_changed_since_checkpoint(intake, state, search, GAP_RECOVERY_KIND)
    _caught_up_to(state, counted)
    return Recovered("search", outcome.found, outcome.published)


async def _events_counted(intake: NotificationIntake, subscription_id: str) -> int | None:
    """What the EHR's `$status` counts for the Subscription (None when it does not say)."""
    answer = await intake.ehr.operation("Subscription", subscription_id, STATUS)
    try:
        status = status_from_query(answer)
    except NotificationRejected:
        log.warning("the EHR's $status answer holds no readable status")
        return None
    return status.events_since_subscription_start


def _missed_numbers(
    intake: NotificationIntake, state: ChannelState, counted: int | None
) -> list[int] | None:
    """The event numbers the EHR counted that this listener did not publish, or None when
    that cannot be known (no count, nothing received and nothing of the Subscription on the
    topic)."""
    if counted is None:
        return None
    if counted == 0:
        return []  # the EHR counted no event yet
    received = state.last_event_number
    if received is None and state.subscription_id:
        received = intake.published.highest_event_number(state.subscription_id)
    if received is None:
        return None
    # a gap, and the numbers still within their grace period: recovery is under way anyway
    missed = {number for number in (*state.unrecovered, *state.missing) if number <= counted}
    missed.update(range(received + 1, counted + 1))
    return sorted(missed)


def _caught_up_to(state: ChannelState, counted: int | None) -> None:
    """Every number up to what the EHR counted is recovered: none is missing any more."""
    if counted is not None:
        state.last_event_number = max(state.last_event_number or 0, counted)
        state.missing = {n: since for n, since in state.missing.items() if n > counted}


async def _publish_missed_events(
    intake: NotificationIntake, state: ChannelState, subscription_id: str, missed: list[int]
) -> tuple[int, int, int]:
    """`$events` for the missed numbers (at most `_MAX_EVENTS_ASKED` a call), each event
    published (or recorded as unusable) in event-number order: how many were returned, how
    many published, and how many the EHR did not return."""
    content = state.channel.payload if state.channel.payload != "empty" else "id-only"
    wanted = set(missed)
    returned = published = 0
    since = missed[0]
    while since <= missed[-1]:
        until = min(missed[-1], since + _MAX_EVENTS_ASKED - 1)
        params = [
            ("eventsSinceNumber", str(since)),
            ("eventsUntilNumber", str(until)),
            ("content", content),
        ]
        answer = await intake.ehr.operation("Subscription", subscription_id, EVENTS, params)
        try:
            notification = checked_resources(notification_of(answer))
        except NotificationRejected as rejection:
            raise EhrError(
                f"the EHR's $events answer is not a valid notification ({rejection.reason})"
            ) from None
        events = sorted(
            (
                e
                for e in notification.events
                if e.event_number in wanted and since <= e.event_number <= until
            ),
            key=lambda event: event.event_number,
        )
        returned += len(events)
        fresh = await unpublished_events(
            intake, dataclasses.replace(notification, events=tuple(events))
        )
        deliveries = await event_deliveries(fresh, intake, datetime.now(UTC), GAP_RECOVERY_KIND)
        for delivery in deliveries:
            if delivery.unusable is not None:
                await record_unusable_acked(intake, delivery.event, delivery.unusable)
            elif await publish_acked(intake, delivery.event):
                published += 1
        since = until + 1
    return returned, published, len(wanted) - returned
