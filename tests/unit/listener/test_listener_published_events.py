"""The dedupe memory's own rules: the window, the capacity, oldest forgotten first."""

from __future__ import annotations

import asyncio

import pytest

from cdsflow.contracts import ClinicalEvent, EventSource
from cdsflow.listener.published_events import PublishedEvents


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_an_event_is_remembered_for_the_window_then_forgotten() -> None:
    clock = Clock()
    published = PublishedEvents(window_s=60, max_events=10, clock=clock)
    published.remember("a")
    clock.now += 59
    assert "a" in published
    clock.now += 2
    assert "a" not in published
    assert len(published) == 0


def test_an_event_published_before_the_window_is_not_kept() -> None:
    clock = Clock()
    published = PublishedEvents(window_s=60, max_events=10, clock=clock)
    published.remember("old", published_at=clock.now - 61)
    published.remember("recent", published_at=clock.now - 59)
    assert "old" not in published
    assert "recent" in published


def test_beyond_the_capacity_the_oldest_is_forgotten_first() -> None:
    published = PublishedEvents(window_s=60, max_events=3, clock=Clock())
    for event_id in "abcd":
        published.remember(event_id)
    assert "a" not in published
    assert all(event_id in published for event_id in "bcd")
    assert len(published) == 3


def test_a_known_event_keeps_its_first_time() -> None:
    clock = Clock()
    published = PublishedEvents(window_s=60, max_events=10, clock=clock)
    published.remember("a")
    clock.now += 50
    published.remember("a")  # read back from the topic after this replica's own ack
    clock.now += 11
    assert "a" not in published


def test_it_is_not_read_back_until_told() -> None:
    assert not PublishedEvents(window_s=60, max_events=10).caught_up


@pytest.mark.parametrize(("window_s", "max_events"), [(0, 10), (60, 0)])
def test_window_and_capacity_must_be_positive(window_s: float, max_events: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        PublishedEvents(window_s=window_s, max_events=max_events)


def published_event(
    event_id: str, subscription_id: str = "", event_number: int = 0
) -> ClinicalEvent:
    return ClinicalEvent(
        event_id=event_id,
        source=EventSource(subscription_id=subscription_id, event_number=event_number),
    )


def test_a_topic_event_is_remembered_by_its_subscription_and_event_number() -> None:
    clock = Clock()
    published = PublishedEvents(window_s=60, max_events=10, clock=clock)
    published.remember_event(published_event("a", "sub-1", 7))
    assert "a" in published
    assert published.has_event_number("sub-1", 7)
    assert not published.has_event_number("sub-1", 8)
    assert not published.has_event_number("sub-2", 7)  # another Subscription's count
    assert published.event_numbers_remembered == 1
    clock.now += 61
    assert not published.has_event_number("sub-1", 7)


@pytest.mark.parametrize(("subscription_id", "event_number"), [("", 7), ("sub-1", 0)])
def test_an_event_without_a_number_is_remembered_by_its_id_only(
    subscription_id: str, event_number: int
) -> None:
    published = PublishedEvents(window_s=60, max_events=10)
    published.remember_event(published_event("a", subscription_id, event_number))
    assert "a" in published
    assert published.event_numbers_remembered == 0
    assert not published.has_event_number(subscription_id, event_number)


def test_each_index_keeps_its_own_capacity() -> None:
    published = PublishedEvents(window_s=60, max_events=2, clock=Clock())
    for number in (1, 2, 3):
        published.remember_event(published_event(f"e{number}", "sub-1", number))
    assert not published.has_event_number("sub-1", 1)
    assert published.has_event_number("sub-1", 3)
    assert len(published) == published.event_numbers_remembered == 2


async def test_waiting_for_the_read_back() -> None:
    published = PublishedEvents(window_s=60, max_events=10, caught_up=True)
    assert await published.wait_caught_up(0)  # read back: no wait at all

    published.caught_up = False
    assert not await published.wait_caught_up(0.01)  # not read back within the timeout

    async def read_back_while_waiting() -> None:
        published.caught_up = True

    reading = asyncio.create_task(read_back_while_waiting())
    assert await published.wait_caught_up(5)
    await reading
