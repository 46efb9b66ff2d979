"""Gaps in a channel's event numbers: which notifications show events never received."""

from __future__ import annotations

import pytest

from cdsflow.listener.domain.channels import Channel
from cdsflow.listener.subscriptions import ChannelSubscriptions, SubscriptionMetrics
from cdsflow.telemetry import MetricsRegistry

from .in_process import RecordingEhr

TOPIC = "http://example.org/fhir/SubscriptionTopic/encounter-start"


@pytest.fixture
def registry() -> MetricsRegistry:
    return MetricsRegistry("listener")


@pytest.fixture
def subscriptions(registry: MetricsRegistry) -> ChannelSubscriptions:
    return ChannelSubscriptions(
        [Channel(name="enc", topic=TOPIC, recovery_search="Encounter?status=in-progress")],
        "a-master-secret-0123456789",
        RecordingEhr().client(4096),
        "https://listener.test/fhir/notifications/rest-hook",
        30.0,
        SubscriptionMetrics.register(registry),
    )


def gaps(registry: MetricsRegistry, outcome: str = "detected") -> float:
    value = registry.registry.get_sample_value(
        "cdsflow_listener_gaps_total", {"channel": "enc", "outcome": outcome}
    )
    return value or 0.0


def test_consecutive_events_are_no_gap(
    subscriptions: ChannelSubscriptions, registry: MetricsRegistry
) -> None:
    state = subscriptions.states["enc"]
    assert not subscriptions.note_notification(state, 0)  # the handshake
    assert not subscriptions.note_notification(state, 1, first_event_number=1)
    assert not subscriptions.note_notification(state, 3, first_event_number=2)  # two in one
    assert not subscriptions.note_notification(state, 3)  # a heartbeat that counts them all
    assert state.last_event_number == 3
    assert not state.recovery_pending
    assert gaps(registry) == 0


def test_an_event_number_skipped_is_a_gap(
    subscriptions: ChannelSubscriptions, registry: MetricsRegistry
) -> None:
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 1, first_event_number=1)

    assert subscriptions.note_notification(state, 3, first_event_number=3)

    assert state.recovery_pending
    assert state.gaps_detected == 1
    assert state.last_event_number == 3
    assert gaps(registry) == 1


def test_a_heartbeat_counting_events_never_received_is_a_gap(
    subscriptions: ChannelSubscriptions,
) -> None:
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 2, first_event_number=2)

    assert subscriptions.note_notification(state, 4)

    assert state.recovery_pending


def test_the_first_notification_seen_sets_the_count_without_a_gap(
    subscriptions: ChannelSubscriptions,
) -> None:
    state = subscriptions.states["enc"]
    assert not subscriptions.note_notification(state, 41, first_event_number=41)
    assert state.last_event_number == 41


def test_numbering_that_starts_again_is_a_new_subscription_not_a_gap(
    subscriptions: ChannelSubscriptions,
) -> None:
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 9, first_event_number=9)

    assert not subscriptions.note_notification(state, 1, first_event_number=1)
    assert state.last_event_number == 1


async def test_a_channel_without_a_recovery_search_counts_its_gap_as_unrecoverable(
    registry: MetricsRegistry,
) -> None:
    subscriptions = ChannelSubscriptions(
        [Channel(name="enc", topic=TOPIC)],
        "a-master-secret-0123456789",
        RecordingEhr().client(4096),
        "https://listener.test/fhir/notifications/rest-hook",
        30.0,
        SubscriptionMetrics.register(registry),
    )
    state = subscriptions.states["enc"]
    subscriptions.note_notification(state, 1, first_event_number=1)
    subscriptions.note_notification(state, 5, first_event_number=5)
    state.status = "active"
    state.subscription_id = "sub-1"

    await subscriptions.recover_missed(state)

    assert not state.recovery_pending
    assert gaps(registry, "unrecoverable") == 1
