"""The Subscriptions that the listener owns on the EHR: created or adopted at start, watched,
re-activated when the EHR switches them off, and shown at `GET /subscriptions`.

Each channel has its own secret, derived from `CDSFLOW_CHANNEL_SECRET` and the channel's name
(HMAC-SHA256), so every replica derives the same one and no channel's secret opens another;
it is sent to the EHR in the Subscription's `channel.header` (an adopted Subscription is
updated with it) and never logged. A notification that carries a channel's secret is known to
come from that channel.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge

from cdsflow.fhir import EhrClient, EhrError
from cdsflow.listener.domain.channel_secret import bearer_secret_matches
from cdsflow.listener.domain.channels import Channel, channel_tag, subscription_resource
from cdsflow.listener.domain.subscription_queries import subscription_operations
from cdsflow.telemetry import MetricsRegistry

log = logging.getLogger("cdsflow.listener")

SUBSCRIPTION_STATUSES = ("requested", "active", "error", "off", "unknown")
_UNSETTLED_S = 1.0


def channel_secret(master_secret: str, channel: Channel) -> str:
    """The channel's own secret: HMAC-SHA256 of its name under the master secret, base64url."""
    digest = hmac.new(
        master_secret.encode(), f"cdsflow-channel:{channel.name}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class ChannelState:
    """What the listener knows of one channel's Subscription."""

    channel: Channel
    secret: str
    subscription_id: str | None = None
    status: str = "unknown"
    error: str | None = None
    last_checked_at: datetime | None = None
    last_notification_at: datetime | None = None
    last_event_number: int | None = None
    reactivations: int = 0
    # pings and empty notifications: what changed after this (the EHR's lastUpdated) is read
    # by a search; one search at a time per channel
    checkpoint: datetime | None = None
    search_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # a gap in the event numbers, an error/off status or a restart: what may have been missed
    # is searched for at the next check
    recovery_pending: bool = False
    # event numbers counted by the EHR but not received yet, with when they went missing
    missing: dict[int, float] = field(default_factory=dict)
    # numbers missing past the grace period: a gap, what recovery asks `$events` for
    unrecovered: set[int] = field(default_factory=set)
    # what the EHR's `$status` last counted (`events-since-subscription-start`)
    events_counted_by_ehr: int | None = None
    # since when the Subscription is active (a heartbeat channel's silence counts from here)
    active_since: datetime | None = None
    # the start of the last silence noted (each silence is noted once)
    silence_noted_for: datetime | None = None
    gaps_detected: int = 0
    gaps_recovered: int = 0
    silences: int = 0

    def as_json(self) -> dict[str, Any]:
        """For `GET /subscriptions`: never the secret."""
        return {
            "channel": self.channel.name,
            "id": self.subscription_id,
            "criteria": self.channel.criteria,
            "topic": self.channel.topic,
            "payload": self.channel.payload,
            "status": self.status,
            "error": self.error,
            "last_checked_at": _iso(self.last_checked_at),
            "last_notification_at": _iso(self.last_notification_at),
            "last_event_number": self.last_event_number,
            "checkpoint": _iso(self.checkpoint),
            "reactivations": self.reactivations,
            "recovery_pending": self.recovery_pending,
            "missing_events": len(self.missing),
            "unrecovered_events": len(self.unrecovered),
            "events_counted_by_ehr": self.events_counted_by_ehr,
            "heartbeat_silences": self.silences,
            "gaps_detected": self.gaps_detected,
            "gaps_recovered": self.gaps_recovered,
        }


@dataclass(frozen=True)
class SubscriptionMetrics:
    status: Gauge
    reactivations: Counter
    gaps: Counter
    recovered_events: Counter
    heartbeat_silences: Counter

    @classmethod
    def register(cls, registry: MetricsRegistry) -> SubscriptionMetrics:
        return cls(
            status=registry.gauge(
                "listener_subscription_status",
                "1 for the status the EHR reports for each channel's Subscription",
                ("channel", "status"),
            ),
            reactivations=registry.counter(
                "listener_subscription_reactivations",
                "Subscriptions the EHR had set to error or off, asked to be active again",
                ("channel",),
            ),
            gaps=registry.counter(
                "listener_gaps",
                "Gaps in a channel's notifications, by outcome: detected, recovered, "
                "unrecoverable (no $events and no search to recover with)",
                ("channel", "outcome"),
            ),
            recovered_events=registry.counter(
                "listener_recovered_events",
                "Events published by gap recovery (not already on the topic)",
                ("channel",),
            ),
            heartbeat_silences=registry.counter(
                "listener_heartbeat_silences",
                "A heartbeat channel heard nothing for its heartbeat period (and the grace): "
                "the EHR's $status is asked what was missed",
                ("channel",),
            ),
        )


class ChannelSubscriptions:
    """Keeps every configured channel's Subscription on the EHR, until `stop`."""

    def __init__(
        self,
        channels: list[Channel],
        master_secret: str,
        ehr: EhrClient,
        endpoint: str,
        check_interval_s: float,
        metrics: SubscriptionMetrics,
        gap_grace_s: float = 10.0,
    ) -> None:
        self._ehr = ehr
        self._endpoint = endpoint
        self._check_interval_s = check_interval_s
        self._gap_grace_s = gap_grace_s
        self.metrics = metrics
        self.states = {
            channel.name: ChannelState(channel, channel_secret(master_secret, channel))
            for channel in channels
        }
        self._task: asyncio.Task[None] | None = None
        # the EHR's Subscription operations (`status`, `events`), read once from its metadata
        self._operations: frozenset[str] | None = None
        self._wake = asyncio.Event()
        # set by the app once the intake exists: searches and publishes what a gap missed
        self.recover: Callable[[ChannelState], Awaitable[None]] | None = None
        # set by the app: a Subscription's highest event number read back from the events
        # topic, where an adopted channel's count resumes (so what arrived while no listener
        # ran shows as missing)
        self.highest_published_number: Callable[[str], int | None] | None = None

    def start(self) -> None:
        if self.states:
            self._task = asyncio.create_task(self._keep_active())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def channel_of(self, authorization: str | None) -> ChannelState | None:
        """The channel whose secret `authorization` carries (each compared in constant time)."""
        found = None
        for state in self.states.values():
            if bearer_secret_matches(authorization, state.secret):
                found = state
        return found

    def note_notification(
        self,
        state: ChannelState,
        events_since_start: int | None,
        event_numbers: Sequence[int] = (),
    ) -> bool:
        """Record a notification from the channel; True when its numbers leave some missing
        (events the EHR counted but this listener has not received).

        EHRs deliver concurrently, so event 3 may arrive before event 2: a missing number is
        only a gap when it is still missing `gap_grace_s` later; then it is recovered."""
        state.last_notification_at = datetime.now(UTC)
        now = time.monotonic()
        for number in event_numbers:
            state.missing.pop(number, None)
        if events_since_start == 0 and not event_numbers:  # a handshake: counting starts
            state.last_event_number = 0
            state.missing.clear()
            return False
        counted = [*event_numbers, *([events_since_start] if events_since_start else [])]
        if not counted:
            return False
        seen = state.last_event_number
        top = max(counted)
        if seen is None or top <= seen:
            state.last_event_number = top if seen is None else seen
            return False
        received = set(event_numbers)
        for number in range(seen + 1, top + 1):
            if number not in received:
                state.missing.setdefault(number, now)
        state.last_event_number = top
        if state.missing:
            self._wake.set()  # to look again once the grace period is over
        return bool(state.missing)

    def note_status_error(self, state: ChannelState) -> None:
        """A notification whose status says `error` (the EHR failed deliveries): what it
        failed to deliver is recovered at once (the check loop wakes), and the Subscription
        re-activated if the EHR keeps it in `error`."""
        if not state.recovery_pending:
            log.warning(
                "the EHR reports the channel's Subscription in error",
                extra={"channel": state.channel.name},
            )
        state.recovery_pending = True
        self._wake.set()

    def note_overdue_gaps(self, state: ChannelState) -> None:
        """Numbers missing for longer than the grace period: a gap, to recover."""
        horizon = time.monotonic() - self._gap_grace_s
        overdue = [number for number, since in state.missing.items() if since <= horizon]
        if not overdue:
            return
        for number in overdue:
            del state.missing[number]
            state.unrecovered.add(number)
        state.gaps_detected += 1
        state.recovery_pending = True
        self.metrics.gaps.labels(state.channel.name, "detected").inc()
        log.warning(
            "gap in the channel's notifications",
            extra={"channel": state.channel.name, "missing_events": len(overdue)},
        )

    def note_silence(self, state: ChannelState) -> None:
        """A heartbeat channel that heard nothing (no event, no heartbeat) for its heartbeat
        period and the grace: notifications may have been lost; recovery asks `$status`."""
        period = state.channel.heartbeat_period_s
        quiet_since = state.last_notification_at or state.active_since
        if period is None or quiet_since is None or state.status != "active":
            return
        if state.silence_noted_for == quiet_since:
            return
        if (datetime.now(UTC) - quiet_since).total_seconds() < period + self._gap_grace_s:
            return
        state.silence_noted_for = quiet_since
        state.silences += 1
        state.recovery_pending = True
        self.metrics.heartbeat_silences.labels(state.channel.name).inc()
        log.warning(
            "no heartbeat from the EHR within the channel's heartbeat period",
            extra={"channel": state.channel.name},
        )

    async def ehr_operations(self) -> frozenset[str]:
        """The Subscription operations the EHR offers (`status`, `events`), from its
        CapabilityStatement, read once; none when it cannot be read (read again next time)."""
        if self._operations is None:
            try:
                self._operations = subscription_operations(await self._ehr.capabilities())
            except EhrError as exc:
                log.warning(
                    "cannot read the EHR's CapabilityStatement",
                    extra={"status_code": exc.status_code},
                )
                return frozenset()
        return self._operations

    def note_unrecoverable(self, state: ChannelState) -> None:
        """Nothing to recover with: no `$events` to ask, no recovery search."""
        state.recovery_pending = False
        state.unrecovered.clear()
        self.metrics.gaps.labels(state.channel.name, "unrecoverable").inc()
        log.warning(
            "a gap cannot be recovered: the EHR offers no $events and the channel declares "
            "no recovery_search",
            extra={"channel": state.channel.name},
        )

    def _next_gap_due_s(self) -> float | None:
        """Seconds until the oldest missing number becomes a gap, if any is missing."""
        oldest = [min(s.missing.values()) for s in self.states.values() if s.missing]
        if not oldest:
            return None
        return max(0.0, min(oldest) + self._gap_grace_s - time.monotonic())

    async def check_all(self) -> None:
        """One round: every channel's Subscription created, adopted or re-activated, and
        what a gap, an error or a restart may have missed recovered."""
        for state in self.states.values():
            try:
                await self._check(state)
            except EhrError as exc:
                log.warning(
                    "cannot keep the channel's Subscription",
                    extra={"channel": state.channel.name, "status_code": exc.status_code},
                )
            self._show(state)
            self.note_overdue_gaps(state)
            self.note_silence(state)
            if state.recovery_pending and state.status == "active":
                await self.recover_missed(state)

    async def recover_missed(self, state: ChannelState) -> None:
        """Recover what the channel may have missed (`gap_recovery`: `$status`, then
        `$events` or the recovery search); without a way to recover: unrecoverable."""
        if self.recover is not None:
            await self.recover(state)
        elif state.channel.search_for_gaps is None:
            self.note_unrecoverable(state)

    async def _keep_active(self) -> None:
        while True:
            await self.check_all()
            # until every Subscription is active (a handshake may have reached the listener
            # before it was listening), look again soon
            settled = all(
                state.status == "active" and not state.recovery_pending
                for state in self.states.values()
            )
            wait = self._check_interval_s if settled else min(self._check_interval_s, _UNSETTLED_S)
            gap_due = self._next_gap_due_s()
            if gap_due is not None:
                wait = min(wait, gap_due + 0.05)
            with contextlib.suppress(TimeoutError):
                # a number gone missing wakes it, to wait for its grace period
                async with asyncio.timeout(wait):
                    await self._wake.wait()
            self._wake.clear()

    async def _check(self, state: ChannelState) -> None:
        current = None
        if state.subscription_id is not None:
            current = await self._ehr.read("Subscription", state.subscription_id)
        if current is None:
            current = await self._adopt_or_create(state)
        elif current.get("status") in ("error", "off"):
            log.warning(
                "the EHR switched the channel's Subscription off; re-activating it",
                extra={"channel": state.channel.name, "status": current.get("status")},
            )
            current = await self._ehr.update(self._wanted(state, current))
            state.recovery_pending = True  # what the EHR failed to deliver is searched for
            state.reactivations += 1
            self.metrics.reactivations.labels(state.channel.name).inc()
        found_id = current.get("id") or state.subscription_id
        state.subscription_id = str(found_id) if found_id else None
        if (
            state.last_event_number is None
            and state.subscription_id is not None
            and self.highest_published_number is not None
        ):
            state.last_event_number = self.highest_published_number(state.subscription_id)
        status = str(current.get("status") or "unknown")
        if status == "active" and state.status != "active":
            state.active_since = datetime.now(UTC)
        state.status = status
        error = current.get("error")
        state.error = error if isinstance(error, str) else None
        state.last_checked_at = datetime.now(UTC)

    async def _adopt_or_create(self, state: ChannelState) -> dict[str, Any]:
        """The channel's Subscription from an earlier start (found by its tag), updated with
        this start's secret and endpoint; or a new one."""
        tag = channel_tag(state.channel)
        found = await self._ehr.search("Subscription", [("_tag", tag)])
        if found:
            log.info("channel's Subscription adopted", extra={"channel": state.channel.name})
            state.recovery_pending = True  # what changed while no listener ran
            return await self._ehr.update(self._wanted(state, found[0]))
        # conditional: two replicas starting together create one Subscription
        created = await self._ehr.create(
            subscription_resource(state.channel, self._endpoint, state.secret),
            if_none_exist=f"_tag={tag}",
        )
        log.info("channel's Subscription created", extra={"channel": state.channel.name})
        return created

    def _wanted(self, state: ChannelState, current: dict[str, Any]) -> dict[str, Any]:
        """What the Subscription must be: ours (secret, endpoint, criteria), asked active."""
        wanted = subscription_resource(state.channel, self._endpoint, state.secret)
        wanted["id"] = current["id"]
        return wanted

    def _show(self, state: ChannelState) -> None:
        for status in SUBSCRIPTION_STATUSES:
            value = 1 if state.status == status else 0
            self.metrics.status.labels(state.channel.name, status).set(value)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
