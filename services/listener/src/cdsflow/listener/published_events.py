"""Which clinical events are already on the topic: the listener's dedupe memory.

A redelivered notification (an EHR retrying after a timeout, a replica that got the same
change, a listener restarted between the broker's ack and its answer to the EHR) names an event
that is already published; it is acknowledged again and published nothing. The memory is the
events topic itself: every replica reads it back for the window on start and keeps following
it (`PublishedEventsTail`), so it survives a restart and is shared across replicas without a
store of its own. This module is the bounded, in-process part, with two indexes of what was
published, each forgotten after the window or beyond the capacity, oldest first:

- by `event_id` (the resource's type, id and version): the same change, however delivered;
- by (Subscription, event number), from the event's `source`: the same topic notification
  event, even when what it carries differs on redelivery (an id-only focus read again after a
  later change, an EHR that builds the payload anew on each attempt).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from cdsflow.contracts import ClinicalEvent


def event_number_key(subscription_id: str, event_number: int) -> str | None:
    """The (Subscription, event number) index's key; None when the event has no number (a
    rest-hook, a search, a topic notification without one: 0 means none in `EventSource`)."""
    if not subscription_id or event_number <= 0:
        return None
    return f"{subscription_id}#{event_number}"


class _RecentKeys:
    """Keys with the time they were published, within a window, at most `capacity`."""

    def __init__(self, window_s: float, capacity: int, clock: Callable[[], float]) -> None:
        self._window_s = window_s
        self._capacity = capacity
        self._clock = clock
        self._published_at: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        self._forget_expired()
        return key in self._published_at

    def __len__(self) -> int:
        return len(self._published_at)

    def remember(self, key: str, when: float) -> None:
        """Keys arrive in about the order they were published (this replica's own acks, and
        the topic read back), so the oldest is forgotten first; a known key keeps its first
        time, one older than the window is not kept."""
        if when < self._clock() - self._window_s or key in self._published_at:
            return
        self._published_at[key] = when
        while len(self._published_at) > self._capacity:
            self._published_at.popitem(last=False)

    def _forget_expired(self) -> None:
        horizon = self._clock() - self._window_s
        while self._published_at:
            oldest_key, oldest_at = next(iter(self._published_at.items()))
            if oldest_at >= horizon:
                return
            del self._published_at[oldest_key]


class PublishedEvents:
    """Events seen on the clinical-events topic within `window_s`, at most `max_events` per
    index.

    `caught_up` is False until the topic has been read back to where it ended at start; until
    then a "not seen" answer cannot be trusted, and the listener asks the EHR to retry.
    """

    def __init__(
        self,
        window_s: float,
        max_events: int,
        clock: Callable[[], float] = time.time,
        *,
        caught_up: bool = False,
    ) -> None:
        if window_s <= 0 or max_events <= 0:
            raise ValueError("the dedupe window and capacity must be positive")
        self.window_s = window_s
        self.max_events = max_events
        self._clock = clock
        self._event_ids = _RecentKeys(window_s, max_events, clock)
        self._event_numbers = _RecentKeys(window_s, max_events, clock)
        # per Subscription, the highest event number on the topic (one int per Subscription):
        # after a restart, where a gap recovery's `$events` starts
        self._highest_numbers: dict[str, int] = {}
        self._caught_up = asyncio.Event()
        if caught_up:
            self._caught_up.set()

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    @caught_up.setter
    def caught_up(self, value: bool) -> None:
        if value:
            self._caught_up.set()
        else:
            self._caught_up.clear()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait until the topic is read back (True), or `timeout_s` passed (False)."""
        if self._caught_up.is_set():
            return True  # every notification asks: no timer when there is nothing to wait for
        try:
            async with asyncio.timeout(timeout_s):
                await self._caught_up.wait()
        except TimeoutError:
            return False
        return True

    def __contains__(self, event_id: object) -> bool:
        return isinstance(event_id, str) and event_id in self._event_ids

    def __len__(self) -> int:
        """How many event ids are remembered."""
        return len(self._event_ids)

    @property
    def event_numbers_remembered(self) -> int:
        return len(self._event_numbers)

    def has_event_number(self, subscription_id: str, event_number: int) -> bool:
        """True when the Subscription's event `event_number` is already published."""
        key = event_number_key(subscription_id, event_number)
        return key is not None and key in self._event_numbers

    def highest_event_number(self, subscription_id: str) -> int | None:
        """The highest event number of the Subscription published (read back or acked)."""
        return self._highest_numbers.get(subscription_id)

    def remember(self, event_id: str, published_at: float | None = None) -> None:
        """Record an event id as published (at `published_at`, seconds since the epoch, or
        now)."""
        self._event_ids.remember(event_id, self._clock() if published_at is None else published_at)

    def remember_event(self, event: ClinicalEvent, published_at: float | None = None) -> None:
        """Record a published event in both indexes: its id, and its (Subscription, event
        number) when it came from a topic notification event."""
        when = self._clock() if published_at is None else published_at
        if event.event_id:
            self._event_ids.remember(event.event_id, when)
        key = event_number_key(event.source.subscription_id, event.source.event_number)
        if key is not None:
            self._event_numbers.remember(key, when)
            subscription_id = event.source.subscription_id
            highest = self._highest_numbers.get(subscription_id, 0)
            self._highest_numbers[subscription_id] = max(highest, event.source.event_number)
