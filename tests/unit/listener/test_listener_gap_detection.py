"""Gaps in a channel's event numbers: numbers the EHR counted that never arrived, after a
grace period for notifications delivered out of order."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cdsflow.listener.domain.channels import Channel
from cdsflow.listener.subscriptions import ChannelSubscriptions, SubscriptionMetrics
from cdsflow.telemetry import MetricsRegistry

from .in_process import RecordingEhr

TOPIC = "http://example.org/fhir/SubscriptionTopic/encounter-start"


@pytest.fixture
def registry() -> MetricsRegistry:
    return MetricsRegistry("listener")


def channel_subscriptions(
    registry: MetricsRegistry, channel: Channel, gap_grace_s: float
) -> ChannelSubscriptions:
    return ChannelSubscriptions(
        [channel],
        "a-master-secret-0123456789",
        RecordingEhr().client(4096),
        "https://listener.test/fhir/notifications/rest-hook",
        30.0,
        SubscriptionMetrics.register(registry),
        gap_grace_s=gap_grace_s,
    )


@pytest.fixture
def subscriptions(registry: MetricsRegistry) -> ChannelSubscriptions:
    channel = Channel(name="enc", topic=TOPIC, recovery_search="Encounter?status=in-progress")
    return channel_subscriptions(registry, channel, gap_grace_s=3600)


def gaps(registry: MetricsRegistry, outcome: str = "detected") -> float:
    value = registry.registry.get_sample_value(
        "cdsflow_listener_gaps_total", {"channel": "enc", "outcome": outcome}
    )
    return value or 0.0


def test_consecutive_events_leave_nothing_missing(subscriptions: ChannelSubscriptions) -> None:
    state = subscriptions.states["enc"]
    assert not subscriptions.note_notification(state, 0)  # the handshake
    assert not subscriptions.note_notification(state, 1, [1])
    assert not subscriptions.note_notification(state, 3, [2, 3])  # two in one Bundle
    assert not subscriptions.note_notification(state, 3)  # a heartbeat that counts them all
    assert state.last_event_number == 3
    assert state.missing == {}


def test_events_out_of_order_are_no_gap(
    subscriptions: ChannelSubscriptions, registry: MetricsRegistry
) -> None:
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 1, [1])

    assert subscriptions.note_notification(state, 3, [3])  # 2 is missing, for now
    assert not subscriptions.note_notification(state, 2, [2])  # and here it is

    assert state.missing == {}
    subscriptions.note_overdue_gaps(state)
    assert not state.recovery_pending
    assert gaps(registry) == 0


def test_a_number_missing_past_the_grace_period_is_a_gap(registry: MetricsRegistry) -> None:
    channel = Channel(name="enc", topic=TOPIC, recovery_search="Encounter?status=in-progress")
    subscriptions = channel_subscriptions(registry, channel, gap_grace_s=0)
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 1, [1])
    subscriptions.note_notification(state, 4, [4])  # 2 and 3 never arrive

    subscriptions.note_overdue_gaps(state)

    assert state.recovery_pending
    assert state.gaps_detected == 1
    assert state.missing == {}
    assert gaps(registry) == 1


def test_a_heartbeat_counting_events_never_received_leaves_them_missing(
    subscriptions: ChannelSubscriptions,
) -> None:
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 2, [2])

    assert subscriptions.note_notification(state, 4)

    assert set(state.missing) == {3, 4}


def test_the_first_notification_seen_sets_the_count(subscriptions: ChannelSubscriptions) -> None:
    state = subscriptions.states["enc"]
    assert not subscriptions.note_notification(state, 41, [41])
    assert state.last_event_number == 41


def test_a_handshake_starts_the_count_again(subscriptions: ChannelSubscriptions) -> None:
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 9, [9])
    subscriptions.note_notification(state, 12, [12])

    assert not subscriptions.note_notification(state, 0)

    assert state.last_event_number == 0
    assert state.missing == {}


async def test_a_channel_without_a_recovery_search_counts_its_gap_as_unrecoverable(
    registry: MetricsRegistry,
) -> None:
    subscriptions = channel_subscriptions(registry, Channel(name="enc", topic=TOPIC), 0)
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 1, [1])
    subscriptions.note_notification(state, 5, [5])
    subscriptions.note_overdue_gaps(state)
    state.status = "active"

    await subscriptions.recover_missed(state)

    assert not state.recovery_pending
    assert gaps(registry, "unrecoverable") == 1


def test_a_heartbeat_period_of_silence_asks_for_a_recovery(registry: MetricsRegistry) -> None:
    channel = Channel(name="enc", topic=TOPIC, heartbeat_period_s=60)
    subscriptions = channel_subscriptions(registry, channel, gap_grace_s=10)
    state = subscriptions.states["enc"]
    state.status = "active"
    state.active_since = datetime.now(UTC) - timedelta(seconds=65)

    subscriptions.note_silence(state)
    assert not state.recovery_pending  # within the period and the grace

    state.active_since = datetime.now(UTC) - timedelta(seconds=71)
    subscriptions.note_silence(state)
    subscriptions.note_silence(state)  # the same silence is noted once
    assert state.recovery_pending
    assert state.silences == 1
    assert (
        registry.registry.get_sample_value(
            "cdsflow_listener_heartbeat_silences_total", {"channel": "enc"}
        )
        == 1
    )

    state.recovery_pending = False
    subscriptions.note_notification(state, 0)  # a heartbeat (or any notification) arrives
    subscriptions.note_silence(state)
    assert not state.recovery_pending


def test_a_channel_without_heartbeats_is_never_silent(subscriptions: ChannelSubscriptions) -> None:
    state = subscriptions.states["enc"]
    state.status = "active"
    state.active_since = datetime.now(UTC) - timedelta(days=1)
    subscriptions.note_silence(state)
    assert not state.recovery_pending


async def test_an_adopted_channel_resumes_its_count_from_the_topic(
    registry: MetricsRegistry,
) -> None:
    """After a restart the first notification seen is event 41, but the topic holds the
    Subscription's events up to 30: 31 to 40 arrived while no listener ran."""
    ehr = RecordingEhr()
    subscription: dict[str, object] = {
        "resourceType": "Subscription",
        "id": "sub-1",
        "status": "active",
        "meta": {"tag": [{"system": "urn:cdsflow:channel", "code": "enc"}]},
    }
    ehr.routes["Subscription"] = lambda _: httpx.Response(
        200,
        json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": subscription}]},
    )
    ehr.routes["Subscription/sub-1"] = lambda request: httpx.Response(
        200, content=request.content or json.dumps(subscription).encode()
    )
    channel = Channel(name="enc", topic=TOPIC)
    subscriptions = ChannelSubscriptions(
        [channel],
        "a-master-secret-0123456789",
        ehr.client(4096),
        "https://listener.test/fhir/notifications/rest-hook",
        30.0,
        SubscriptionMetrics.register(registry),
    )
    subscriptions.highest_published_number = {"sub-1": 30}.get
    state = subscriptions.states["enc"]

    await subscriptions.check_all()
    assert (state.subscription_id, state.last_event_number) == ("sub-1", 30)
    assert state.recovery_pending  # adopted: what changed meanwhile is recovered

    assert subscriptions.note_notification(state, 41, [41])
    assert set(state.missing) == set(range(31, 41))
