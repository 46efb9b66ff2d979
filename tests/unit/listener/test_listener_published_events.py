"""The dedupe memory's own rules: the window, the capacity, oldest forgotten first."""

from __future__ import annotations

import pytest

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
