"""Which clinical events are already on the topic: the listener's dedupe memory.

A redelivered notification (an EHR retrying after a timeout, a replica that got the same
change, a listener restarted between the broker's ack and its answer to the EHR) names an event
that is already published; it is acknowledged again and published nothing. The memory is the
events topic itself: every replica reads it back for the window on start and keeps following
it (`PublishedEventsTail`), so it survives a restart and is shared across replicas without a
store of its own. This module is the bounded, in-process part: ids with the time they were
published, forgotten after the window or beyond the capacity, oldest first.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable


class PublishedEvents:
    """Event ids seen on the clinical-events topic within `window_s`, at most `max_events`.

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
        self._published_at: OrderedDict[str, float] = OrderedDict()
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
        try:
            async with asyncio.timeout(timeout_s):
                await self._caught_up.wait()
        except TimeoutError:
            return False
        return True

    def __contains__(self, event_id: object) -> bool:
        self._forget_expired()
        return event_id in self._published_at

    def __len__(self) -> int:
        return len(self._published_at)

    def remember(self, event_id: str, published_at: float | None = None) -> None:
        """Record an event as published (at `published_at`, seconds since the epoch, or now);
        one older than the window is not kept, one already known keeps its first time.

        Ids arrive in about the order they were published (this replica's own acks, and the
        topic read back), so the oldest is forgotten first."""
        when = self._clock() if published_at is None else published_at
        if when < self._clock() - self.window_s or event_id in self._published_at:
            return
        self._published_at[event_id] = when
        while len(self._published_at) > self.max_events:
            self._published_at.popitem(last=False)

    def _forget_expired(self) -> None:
        horizon = self._clock() - self.window_s
        while self._published_at:
            oldest_id, oldest_at = next(iter(self._published_at.items()))
            if oldest_at >= horizon:
                return
            del self._published_at[oldest_id]
